"""lm-eval model adapter: a :class:`DesignLM` plus a ``tokenizers.Tokenizer`` as an lm-eval ``LM``.

Registered with lm-eval as ``"modis"``, so ``lm_eval.simple_evaluate(model=ModisLM(...), ...)``
and ``simple_evaluate(model="modis", model_args={"model": lm, "tokenizer": tok})`` both work.

Scoring follows lm-eval's conventions exactly:

* ``loglikelihood``: context and continuation are encoded together and split (trailing spaces
  of the context move to the continuation); an empty context is replaced by the end-of-text
  token. Continuations longer than the context window are scored in windows.
* ``loglikelihood_rolling``: every token of the document is predicted exactly once, the first
  conditioned on end-of-text, each window of ``context_len`` tokens seeing as much preceding
  text as fits (the scheme of ``lm_eval.utils.get_rolling_token_windows``).
* ``generate_until``: greedy decoding until a stop sequence, end-of-text or ``max_gen_toks``.

Every model call is batched: windows from all requests are sorted by length, right-padded
(the model is causal, so padding after a position never changes its logits) and run together.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tokenizers import Tokenizer
from tqdm import tqdm

from model_discovery.train.tokenizer import eot_id as tokenizer_eot_id

log = logging.getLogger(__name__)

DEFAULT_MAX_GEN_TOKS = 256


def resolve_device(device: str | torch.device | None, model: torch.nn.Module | None = None) -> torch.device:
    """``'auto'``/``None`` -> the model's device (or CUDA when available); else ``device``."""
    if device is None or str(device) == "auto":
        if model is not None:
            param = next(iter(model.parameters()), None)
            if param is not None and (device is None or param.device.type != "cpu"):
                return param.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(str(device))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


def score_windows(n_tokens: int, n_pred: int, max_len: int) -> Iterator[tuple[int, int, int]]:
    """Split the prediction of the last ``n_pred`` of ``n_tokens`` tokens into model windows.

    Yields ``(start, end, n_scored)``: feed ``tokens[start:end]`` and score its last
    ``n_scored`` logits against ``tokens[end - n_scored + 1 : end + 1]``. Each predicted token is
    scored exactly once, with as much preceding context as ``max_len`` allows.
    """
    first = n_tokens - n_pred
    if first < 1:
        raise ValueError("at least one conditioning token is required before the scored tokens")
    a = first
    while a < n_tokens:
        b = min(n_tokens, a + max_len)
        yield max(0, b - 1 - max_len), b - 1, b - a
        a = b


@register_model("modis")
class ModisLM(TemplateLM):
    """A design's language model (``model(idx) -> logits``, ``context_len``) for lm-eval.

    Args:
        model: a :class:`DesignLM` (or any causal ``nn.Module`` with ``context_len``).
        tokenizer: a ``tokenizers.Tokenizer`` or the path of its ``tokenizer.json``.
        eot_id: end-of-text id; found among the tokenizer's special tokens when omitted.
        batch_size: windows per forward pass (``"auto"`` means 16).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"``/``None`` (the model's device).
        max_gen_toks: default generation length when a request does not give one.
        max_length: context window; defaults to ``model.context_len``.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Tokenizer | str | Path, eot_id: int | None = None,
                 batch_size: int | str | None = 16, device: str | torch.device | None = None,
                 max_gen_toks: int = DEFAULT_MAX_GEN_TOKS, max_length: int | None = None,
                 max_batch_size: int | None = None, **unused: Any) -> None:
        super().__init__()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module (a DesignLM), got {type(model).__name__}")
        if isinstance(tokenizer, (str, Path)):
            tokenizer = Tokenizer.from_file(str(tokenizer))
        if unused:
            log.debug("modis: ignoring model arguments %s", sorted(unused))
        self._device = resolve_device(device, model)
        self.model = model.to(self._device).eval()
        self.tokenizer = tokenizer
        self._eot_id = int(eot_id) if eot_id is not None else tokenizer_eot_id(tokenizer)
        length = max_length or getattr(model, "context_len", None)
        if not length:
            raise ValueError("model has no context_len; pass max_length")
        self._max_length = int(length)
        bs = 16 if batch_size in (None, "auto") or str(batch_size).startswith("auto") else int(batch_size)
        self.batch_size = max(1, min(bs, int(max_batch_size) if max_batch_size else bs))
        self.max_gen_toks = int(max_gen_toks)

    # -- properties lm-eval reads ----------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self._eot_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def tokenizer_name(self) -> str:
        return f"modis-bpe-{self.tokenizer.get_vocab_size()}"

    def get_model_info(self) -> dict[str, Any]:
        """Facts lm-eval records in its results' ``config``."""
        n_params = sum(p.numel() for p in self.model.parameters())
        return {"model_num_parameters": n_params, "model_dtype": str(next(self.model.parameters()).dtype),
                "max_length": self.max_length}

    # -- tokenization ----------------------------------------------------------------------
    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        return self.tokenizer.encode(string, add_special_tokens=False).ids

    def tok_decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=False)

    # -- scoring core ----------------------------------------------------------------------
    @torch.inference_mode()
    def _logits(self, inputs: list[list[int]]) -> torch.Tensor:
        """Logits for right-padded ``inputs``: (batch, max_len, vocab)."""
        width = max(len(x) for x in inputs)
        batch = torch.full((len(inputs), width), self._eot_id, dtype=torch.long)
        for i, x in enumerate(inputs):
            batch[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        return self.model(batch.to(self._device))

    def _score(self, sequences: list[tuple[list[int], int]], disable_tqdm: bool = False,
               desc: str = "scoring") -> list[tuple[float, bool]]:
        """Sum of log-probs of the last ``n_pred`` tokens of each sequence, and whether greedy."""
        windows = [(r, tokens[start:end], tokens[end - n + 1: end + 1])  # (request, input, targets)
                   for r, (tokens, n_pred) in enumerate(sequences)
                   for start, end, n in score_windows(len(tokens), n_pred, self.max_length)]
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i][1]))
        totals = [0.0] * len(sequences)
        greedy = [True] * len(sequences)
        pbar = tqdm(total=len(order), desc=desc, disable=disable_tqdm or len(order) < 256)
        for lo in range(0, len(order), self.batch_size):
            chunk = [windows[i] for i in order[lo: lo + self.batch_size]]
            logits = self._logits([w[1] for w in chunk])
            for row, (r, inp, targets) in enumerate(chunk):
                n = len(targets)
                lp = F.log_softmax(logits[row, len(inp) - n: len(inp)].float(), dim=-1)
                tgt = torch.tensor(targets, dtype=torch.long, device=lp.device)
                totals[r] += float(lp.gather(-1, tgt[:, None]).sum())
                greedy[r] = greedy[r] and bool((lp.argmax(-1) == tgt).all())
            pbar.update(len(chunk))
        pbar.close()
        return list(zip(totals, greedy))

    def _loglikelihood_tokens(self, requests: list[tuple[tuple[str, str], list[int], list[int]]],
                              disable_tqdm: bool = False, **kwargs: Any) -> list[tuple[float, bool]]:
        seqs = [(list(ctx) + list(cont), len(cont)) for _, ctx, cont in requests]
        out = self._score(seqs, disable_tqdm=disable_tqdm, desc="loglikelihood")
        for (key, _, _), res in zip(requests, out):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, res)
        return out

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        docs = [self.tok_encode(req.args[0]) for req in requests]
        nonempty = [([self.prefix_token_id] + toks, len(toks)) for toks in docs if toks]
        scored = iter(self._score(nonempty, disable_tqdm=disable_tqdm, desc="rolling"))
        out: list[float] = []
        for req, toks in zip(requests, docs):
            ll = next(scored)[0] if toks else 0.0
            self.cache_hook.add_partial("loglikelihood_rolling", (req.args[0],), ll)
            out.append(ll)
        return out

    # -- generation ------------------------------------------------------------------------
    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        jobs = []
        for req in requests:
            context, gen_kwargs = req.args[0], dict(req.args[1] or {})
            until = gen_kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_gen = int(gen_kwargs.pop("max_gen_toks", self.max_gen_toks))
            # as lm-eval's hf model: the context keeps its last max_length - max_gen tokens
            ctx = (self.tok_encode(context) or [self._eot_id])[-max(1, self.max_length - max_gen):]
            jobs.append((ctx, until, max_gen))
        order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i][0]))
        out: list[str | None] = [None] * len(jobs)
        for lo in tqdm(range(0, len(order), self.batch_size), desc="generate_until",
                       disable=disable_tqdm or len(order) < 16):
            idx = order[lo: lo + self.batch_size]
            texts = self._greedy([jobs[i] for i in idx])
            for i, text in zip(idx, texts):
                out[i] = text
                self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return [t or "" for t in out]

    @torch.inference_mode()
    def _greedy(self, jobs: list[tuple[list[int], list[str], int]]) -> list[str]:
        """Greedy continuations of a batch, each cut at its first stop sequence."""
        seqs = [list(ctx) for ctx, _, _ in jobs]
        gen: list[list[int]] = [[] for _ in jobs]
        done = [max_gen <= 0 for _, _, max_gen in jobs]
        texts = [""] * len(jobs)
        while not all(done):
            live = [i for i, d in enumerate(done) if not d]
            windows = [seqs[i][-self.max_length:] for i in live]
            logits = self._logits(windows)
            for row, i in enumerate(live):
                nxt = int(logits[row, len(windows[row]) - 1].argmax())
                if nxt == self._eot_id:
                    done[i] = True
                    continue
                seqs[i].append(nxt)
                gen[i].append(nxt)
                texts[i] = self.tok_decode(gen[i])
                _, until, max_gen = jobs[i]
                if any(s and s in texts[i] for s in until) or len(gen[i]) >= max_gen:
                    done[i] = True
        return [cut_at_stop(t, until) for t, (_, until, _) in zip(texts, jobs)]


def cut_at_stop(text: str, until: Sequence[str]) -> str:
    """``text`` up to (excluding) the earliest occurrence of any stop sequence."""
    cut = len(text)
    for stop in until:
        if stop:
            pos = text.find(stop)
            if pos != -1:
                cut = min(cut, pos)
    return text[:cut]
