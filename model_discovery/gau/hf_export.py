"""Export a design (and optionally trained weights and a tokenizer) as a Hugging Face model folder.

The folder loads with ``transformers`` alone (no ``model_discovery`` install)::

    model = AutoModelForCausalLM.from_pretrained(out_dir, trust_remote_code=True)
    model.generate(input_ids, max_new_tokens=8, do_sample=False)

Layout written by :func:`export_hf`::

    config.json               ModisConfig fields + auto_map to the two code files below
    configuration_modis.py    ModisConfig(PretrainedConfig)
    modeling_modis.py         ModisForCausalLM(PreTrainedModel, GenerationMixin) around DesignLM
    gau_design.py             the compiled, self-contained design module (compile_design)
    model.safetensors         weights under ``model.``; the tied head is stored once (embedding)
    generation_config.json    greedy defaults; the design's decode cache on when it checked exact
    design.json               the design itself, for provenance
    tokenizer files           when a ``tokenizers.Tokenizer`` is given (PreTrainedTokenizerFast)

Generation keeps the design's :class:`DecodeCache` (KV caches and recurrent states of its units,
see ``gau/runtime.py``), so ``generate`` does not recompute the prefix. Export decodes a random
sequence chunk by chunk and compares it with the full forward; a design whose decoding differs
is exported with ``use_cache`` off (every step recomputes the context window).

Exporting builds the design's LM in this process (to produce or validate the weights), which
runs design code: export only designs that passed the sandboxed checks.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from model_discovery.gau.compose import build_lm, compile_design
from model_discovery.gau.scales import get_scale
from model_discovery.records import Design, DesignError, ScaleConfig

MODEL_TYPE = "modis"
DESIGN_MODULE = "gau_design"
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>")
TIED_HEAD_KEY = "lm_head.weight"
EMBEDDING_KEY = "wte.weight"
DECODE_TOLERANCE = 1e-4  # max |decoded - full| logit difference, relative to the logits' scale

log = logging.getLogger(__name__)

# ``{design}`` (the design's name and fingerprint) in both code files: transformers maps a remote config
# class to the model class it loaded first, so two designs exported to folders of one name must not
# share a config class
CONFIGURATION_SOURCE = '''"""Configuration of the exported model_discovery design {design} (GAU tree)."""

from transformers import PretrainedConfig


class ModisConfig(PretrainedConfig):
    """Scale of the design's LM: width, depth, context and vocabulary; the design is code."""

    model_type = "modis"

    def __init__(self, design_name: str = "design", fingerprint: str = "", scale_name: str = "",
                 d_model: int = 64, n_block: int = 2, context_len: int = 128, vocab_size: int = 2048,
                 tie_word_embeddings: bool = True, use_cache: bool = True, **kwargs):
        self.design_name = design_name
        self.fingerprint = fingerprint
        self.scale_name = scale_name
        self.d_model = d_model
        self.hidden_size = d_model
        self.n_block = n_block
        self.num_hidden_layers = n_block
        self.context_len = context_len
        self.max_position_embeddings = context_len
        self.vocab_size = vocab_size
        self.use_cache = use_cache
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
'''

MODELING_SOURCE = '''"""Causal LM wrapper of the exported model_discovery design {design} (its code is gau_design.py)."""

from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_modis import ModisConfig
from .gau_design import DecodeCache, build_lm


@dataclass
class ModisCausalLMOutput(ModelOutput):
    """Loss, logits, and the decode cache that generation feeds back in."""

    loss: Optional[torch.FloatTensor] = None
    logits: Optional[torch.FloatTensor] = None
    cache: Optional[DecodeCache] = None


class ModisForCausalLM(PreTrainedModel, GenerationMixin):
    """``self.model`` is the design's DesignLM: embedding -> blocks -> RMSNorm -> tied head.

    With ``use_cache`` generation keeps a DecodeCache (each unit's KV cache or recurrent state)
    and feeds only the new token; once the sequence outgrows ``context_len`` each step recomputes
    the last ``context_len`` tokens, as without a cache.
    """

    config_class = ModisConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _tied_weights_keys = {"model.lm_head.weight": "model.wte.weight"}
    _is_stateful = True

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the design keeps its own DecodeCache

    def __init__(self, config: ModisConfig) -> None:
        super().__init__(config)
        # Built on a real device even inside from_pretrained's meta-device context, so that
        # buffers a unit computes in __init__ hold real values; loaded weights overwrite params.
        with torch.device("cpu"):
            self.model = build_lm(config.d_model, config.n_block, config.vocab_size, config.context_len)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Units initialise themselves in their constructors; nothing to redo here."""

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.model.wte

    def set_input_embeddings(self, value: torch.nn.Embedding) -> None:
        self.model.wte = value

    def get_output_embeddings(self) -> torch.nn.Linear:
        return self.model.lm_head

    def set_output_embeddings(self, value: torch.nn.Linear) -> None:
        self.model.lm_head = value

    def prepare_inputs_for_generation(self, input_ids: torch.LongTensor, cache: Optional[DecodeCache] = None,
                                      use_cache: Optional[bool] = None, **kwargs: Any) -> dict:
        if not (self.config.use_cache if use_cache is None else use_cache):
            return {"input_ids": input_ids[:, -self.config.context_len:]}
        new, cache = self.model.next_inputs(input_ids, cache)
        return {"input_ids": new, "cache": cache}

    def forward(self, input_ids: torch.LongTensor, attention_mask: Optional[torch.Tensor] = None,
                labels: Optional[torch.LongTensor] = None, cache: Optional[DecodeCache] = None,
                use_cache: Optional[bool] = None, return_dict: Optional[bool] = None,
                **kwargs: Any) -> ModisCausalLMOutput:
        """Logits for every position; with ``labels`` also the shifted next-token loss.

        With ``cache`` (or ``use_cache=True``, which starts one) ``input_ids`` continue the
        positions the cache holds. ``attention_mask`` is accepted for API compatibility; designs
        attend causally over all given tokens, so left padding is not supported.
        """
        if cache is None and use_cache:
            cache = DecodeCache()
        logits = self.model(input_ids, cache)
        loss = None
        if labels is not None:
            shift_logits = logits[:, :-1].float().reshape(-1, logits.size(-1))
            loss = F.cross_entropy(shift_logits, labels[:, 1:].reshape(-1), ignore_index=-100)
        return ModisCausalLMOutput(loss=loss, logits=logits, cache=cache)
'''


def export_hf(design: Design, scale: ScaleConfig, out_dir: str | Path,
              state_dict: Mapping[str, torch.Tensor] | None = None, vocab_size: int | None = None,
              tokenizer: Any | None = None) -> Path:
    """Write a Hugging Face model folder for ``design`` at ``scale`` and return its path.

    ``state_dict`` holds :class:`DesignLM` weights (keys like ``wte.weight``, ``blocks.0....``;
    a ``model.`` prefix is accepted); without it the freshly initialised LM is exported.
    ``vocab_size`` defaults to the embedding rows of ``state_dict``, else the tokenizer's
    vocabulary, else the rung's. ``tokenizer`` is a ``tokenizers.Tokenizer``; it is saved as a
    ``PreTrainedTokenizerFast`` and its end-of-text token becomes ``eos_token_id``.

    Raises :class:`DesignError` naming the offending key when the weights do not fit the design.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = _strip_prefix(state_dict) if state_dict is not None else None
    vocab = _resolve_vocab(weights, tokenizer, vocab_size, scale)

    model = build_lm(design, scale, vocab_size=vocab)
    expected = model.state_dict()
    if weights is None:
        weights = {k: v.detach() for k, v in expected.items()}
    _check_weights(design, weights, expected)
    model.load_state_dict(weights, strict=False)
    decode_ok = decode_error(model) <= DECODE_TOLERANCE
    if not decode_ok:
        log.warning("design %s: decoding with a cache differs from the full forward; exported with "
                    "use_cache off (each step recomputes the context)", design.name)

    tensors = {f"model.{k}": v.detach().to("cpu").contiguous().clone()
               for k, v in weights.items() if k != TIED_HEAD_KEY}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})

    (out / f"{DESIGN_MODULE}.py").write_text(compile_design(design))
    label = f"{design.name} ({design.fingerprint()})"
    (out / "configuration_modis.py").write_text(CONFIGURATION_SOURCE.replace("{design}", label, 1))
    (out / "modeling_modis.py").write_text(MODELING_SOURCE.replace("{design}", label, 1))
    (out / "design.json").write_text(design.to_json())

    special = _save_tokenizer(tokenizer, out) if tokenizer is not None else {}
    config = {**_config_dict(design, scale, vocab, special), "use_cache": decode_ok}
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    generation = {"do_sample": False, "use_cache": decode_ok,
                  **{k: v for k, v in special.items() if k in ("eos_token_id", "bos_token_id", "pad_token_id")}}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2, sort_keys=True) + "\n")
    return out


def export_verified(design: Design, verify_dir: str | Path, out_dir: str | Path) -> Path:
    """Export the model a verification trained: its weights, tokenizer and rung.

    ``verify_dir`` is a verification folder (``verify_result.json``, ``train/model.safetensors``,
    plain tensors written by the trainer: never a pickle from the sandbox). Raises :class:`DesignError` naming the
    file when the folder is not a finished verification of ``design``.
    """
    folder = Path(verify_dir)

    record_path, weights = folder / "verify_result.json", folder / "train" / "model.safetensors"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as exc:
        raise DesignError(f"{record_path}: not a verification record ({exc})") from exc
    if record.get("fingerprint") != design.fingerprint():
        raise DesignError(f"{record_path}: verifies design {record.get('design')!r}, not {design.name!r}")
    if record.get("status") != "ok" or not weights.exists():
        raise DesignError(f"{folder}: no finished training to export (status {record.get('status')!r})")
    state = load_file(str(weights))
    tok_path = Path(record.get("data_dir", "")) / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(tok_path)) if tok_path.is_file() else None
    return export_hf(design, get_scale(record["scale"]), out_dir, state_dict=state, tokenizer=tokenizer)


@torch.no_grad()
def decode_error(model: torch.nn.Module, length: int = 24, seed: int = 0) -> float:
    """Largest difference between decoded and full-forward logits, relative to the logits' scale.

    ``model`` is a built DesignLM. A random sequence is fed through one cache as a prompt, single
    tokens and a chunk, and compared with one full forward.
    """
    length = min(length, model.context_len)
    idx = torch.randint(0, model.vocab_size, (2, length), generator=torch.Generator().manual_seed(seed))
    was_training = model.training
    model.eval()
    try:
        full = model(idx).float()
        cache = sys.modules[type(model).__module__].DecodeCache()
        cuts = sorted({0, length // 3, length // 3 + 1, length // 3 + 2, length})
        decoded = torch.cat([model(idx[:, a:b], cache).float() for a, b in zip(cuts, cuts[1:])], dim=1)
    finally:
        model.train(was_training)
    return float((decoded - full).abs().max() / full.abs().max().clamp_min(1e-6))


def _strip_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    keys = list(state_dict)
    if keys and all(k.startswith("model.") for k in keys):
        return {k[len("model."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _resolve_vocab(weights: Mapping[str, torch.Tensor] | None, tokenizer: Any | None,
                   vocab_size: int | None, scale: ScaleConfig) -> int:
    if vocab_size is not None:
        return int(vocab_size)
    if weights is not None and EMBEDDING_KEY in weights:
        return int(weights[EMBEDDING_KEY].shape[0])
    if tokenizer is not None:
        return int(tokenizer.get_vocab_size())
    return scale.vocab_size


def _check_weights(design: Design, weights: Mapping[str, torch.Tensor],
                   expected: Mapping[str, torch.Tensor]) -> None:
    missing = sorted(set(expected) - set(weights) - {TIED_HEAD_KEY})
    unexpected = sorted(set(weights) - set(expected))
    if missing:
        raise DesignError(f"design {design.name}: state_dict lacks key {missing[0]!r} "
                          f"({len(missing)} missing)")
    if unexpected:
        raise DesignError(f"design {design.name}: state_dict has unexpected key {unexpected[0]!r} "
                          f"({len(unexpected)} unexpected)")
    for key, ref in expected.items():
        if key in weights and tuple(weights[key].shape) != tuple(ref.shape):
            raise DesignError(f"design {design.name}: state_dict key {key!r} has shape "
                              f"{tuple(weights[key].shape)}, expected {tuple(ref.shape)}")


def _save_tokenizer(tokenizer: Any, out: Path) -> dict[str, Any]:
    """Save ``tokenizer`` as PreTrainedTokenizerFast; return the special-token ids found."""
    from transformers import PreTrainedTokenizerFast

    vocab = tokenizer.get_vocab()
    eos = next((t for t in EOS_CANDIDATES if t in vocab), None)
    kwargs: dict[str, str] = {}
    if eos is not None:
        kwargs = {"eos_token": eos, "bos_token": eos, "pad_token": eos}
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **kwargs)
    fast.save_pretrained(str(out))
    if eos is None:
        return {}
    return {"eos_token_id": vocab[eos], "bos_token_id": vocab[eos], "pad_token_id": vocab[eos]}


def _config_dict(design: Design, scale: ScaleConfig, vocab: int, special: dict[str, Any]) -> dict[str, Any]:
    import transformers

    return {
        "model_type": MODEL_TYPE,
        "architectures": ["ModisForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_modis.ModisConfig",
                     "AutoModelForCausalLM": "modeling_modis.ModisForCausalLM"},
        "design_name": design.name,
        "fingerprint": design.fingerprint(),
        "scale_name": scale.name,
        "d_model": scale.d_model,
        "n_block": scale.n_block,
        "context_len": scale.context_len,
        "vocab_size": vocab,
        "tie_word_embeddings": True,
        "dtype": "float32",
        "transformers_version": transformers.__version__,
        **special,
    }
