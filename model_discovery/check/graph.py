"""A design's LM as data: an ATen operator graph plus weights, run without the design's Python.

Inside the design's sandbox, :func:`export_lm` traces ``model.hidden_states(idx)`` with
``make_fx`` (pre-dispatch ATen ops, real tensors) for each requested ``(mode, length)`` and
writes :data:`SPEC_FILE` (a :class:`GraphBundle`) and :data:`WEIGHTS_FILE` (safetensors) into a
directory. Nothing in that directory is code: the judge (:class:`GraphLM`, in another process)
reads it as data, admits only ATen operators (plus tuple indexing and grad-mode switches), refuses
the few that touch files or expose uninitialised memory, and computes the LM head itself from the
token embedding (``wte.weight``, tied as in every design's LM). So the design cannot patch the
judge, see the targets, or keep state between calls: each call runs the same pure function of the
weights and the tokens.

A graph has fixed shapes: ``GraphLM`` splits a batch into the traced batch and right-pads shorter
sequences to the traced length. Padding is sound only for causal graphs, which is why the judge
tests causality on every graph before it trusts any other figure (:mod:`model_discovery.check.causality`).
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load as load_tensors
from safetensors.torch import save_file
from torch import nn
from torch.func import functional_call

SPEC_FILE = "graph.json"
WEIGHTS_FILE = "weights.safetensors"
GRAPH_VERSION = 1
EMBEDDING = "wte.weight"
MAX_SPEC_BYTES = 64 * 2**20
Mode = Literal["train", "eval"]

# ATen operators that read or write files, print, or reshape storage in place
DENIED_OPS = frozenset({"from_file", "_print", "save", "load", "resize_", "resize_as_", "set_", "_cufft_set_plan_cache_max_size",
                        "_nested_tensor_from_tensor_list", "record_stream", "_assert_tensor_metadata"})
_SPECIAL: dict[str, Callable[..., Any]] = {"getitem": operator.getitem}


class GraphError(ValueError):
    """A graph bundle that cannot be trusted or run; the message names the file and the node."""


class NodeSpec(BaseModel):
    """One operator call: ``name = target(*args, **kwargs)``; arguments are encoded (see ``_encode``)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    target: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class GraphSpec(BaseModel):
    """One traced function ``hidden_states(state..., idx) -> (batch, seq_len, d_model)``."""

    model_config = ConfigDict(extra="forbid")
    mode: Mode
    batch: int = Field(gt=0)
    seq_len: int = Field(gt=0)
    inputs: list[str] = Field(description="placeholder names: one per state tensor, then the tokens")
    nodes: list[NodeSpec]
    output: Any


class GraphBundle(BaseModel):
    """The graphs of one LM and the names of the weights they share."""

    model_config = ConfigDict(extra="forbid")
    version: int = GRAPH_VERSION
    vocab_size: int = Field(gt=0)
    d_model: int = Field(gt=0)
    params: list[str] = Field(description="trainable state, in placeholder order")
    buffers: list[str] = Field(default_factory=list, description="non-trainable state, after params")
    constants: list[str] = Field(default_factory=list, description="tensors the trace captured")
    graphs: list[GraphSpec]


# -- encoding of arguments ---------------------------------------------------------------------
def _encode(value: Any) -> Any:
    if isinstance(value, torch.fx.Node):
        return {"$node": value.name}
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, torch.dtype):
        return {"$dtype": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"$device": value.type}
    if isinstance(value, torch.layout):
        return {"$layout": str(value).removeprefix("torch.")}
    if isinstance(value, torch.memory_format):
        return {"$memory_format": str(value).removeprefix("torch.")}
    raise GraphError(f"cannot export an argument of type {type(value).__name__}: {value!r:.80}")


def _decode(value: Any, env: dict[str, Any], device: torch.device) -> Any:
    if isinstance(value, list):
        return [_decode(v, env, device) for v in value]
    if isinstance(value, dict):
        (key, item), = value.items()
        if key == "$node":
            return env[item]
        if key == "$float":
            return float(item)
        if key == "$device":
            return device
        return _ENUMS[key][item]
    return value


_ENUMS: dict[str, dict[str, Any]] = {
    "$dtype": {str(d).removeprefix("torch."): d for d in (
        torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
        torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)},
    "$layout": {"strided": torch.strided},
    "$memory_format": {"contiguous_format": torch.contiguous_format, "preserve_format": torch.preserve_format,
                       "channels_last": torch.channels_last},
}


# -- export (inside the design's sandbox) ------------------------------------------------------
def _target_name(target: Any) -> str:
    if target is operator.getitem:
        return "getitem"
    if target is torch._C._set_grad_enabled:
        return "set_grad_enabled"
    if isinstance(target, torch._ops.OpOverload):
        return f"{target.namespace}.{target._opname}.{target._overloadname}"
    raise GraphError(f"the trace called {target!r}, which is not an ATen operator")


def export_lm(model: nn.Module, shapes: Iterable[tuple[Mode, int, int]], out_dir: str | Path,
              weights: dict[str, dict[str, torch.Tensor]] | None = None) -> GraphBundle:
    """Trace ``model.hidden_states`` for each ``(mode, batch, seq_len)`` and write the bundle.

    ``weights``: extra named weight sets (same names and shapes as the model's state) saved
    beside the model's own, e.g. one initialisation per probe (``<set>/<name>`` in the file).
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    if not callable(getattr(model, "hidden_states", None)):
        raise GraphError("the LM has no hidden_states(idx) method")
    wrapper = _HiddenStates(model)
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    state = {**params, **buffers}
    if EMBEDDING not in params:
        raise GraphError(f"the LM has no parameter {EMBEDDING!r} (its token embedding)")
    vocab, d_model = params[EMBEDDING].shape
    graphs: list[GraphSpec] = []
    constants: dict[str, torch.Tensor] = {}
    was_training = model.training
    for mode, batch, seq_len in shapes:
        model.train(mode == "train")
        idx = torch.randint(0, int(vocab), (batch, seq_len))

        def hidden(st: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
            return functional_call(wrapper, {f"lm.{k}": v for k, v in st.items()}, (tokens,), tie_weights=True)

        gm = make_fx(hidden, pre_dispatch=True)(state, idx)
        graphs.append(_spec(gm, mode, batch, seq_len, constants, len(graphs)))
    model.train(was_training)
    tensors = {name: t.detach().contiguous().clone() for name, t in state.items()}
    tensors.update({f"const/{k}": v for k, v in constants.items()})
    for set_name, named in (weights or {}).items():
        tensors.update({f"{set_name}/{k}": v.detach().contiguous().clone() for k, v in named.items()})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / WEIGHTS_FILE))
    bundle = GraphBundle(vocab_size=int(vocab), d_model=int(d_model), params=list(params), buffers=list(buffers),
                         constants=list(constants), graphs=graphs)
    (out / SPEC_FILE).write_text(bundle.model_dump_json())
    return bundle


class _HiddenStates(nn.Module):
    """``forward`` = the LM's ``hidden_states``, so ``functional_call`` can trace it."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.lm.hidden_states(tokens)


def _spec(gm: torch.fx.GraphModule, mode: Mode, batch: int, seq_len: int, constants: dict[str, torch.Tensor],
          index: int) -> GraphSpec:
    inputs: list[str] = []
    nodes: list[NodeSpec] = []
    output: Any = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            inputs.append(node.name)
        elif node.op == "get_attr":
            key = f"g{index}_{node.target}"
            constants[key] = getattr(gm, node.target)
            nodes.append(NodeSpec(name=node.name, target="constant", args=[key]))
        elif node.op == "call_function":
            nodes.append(NodeSpec(name=node.name, target=_target_name(node.target),
                                  args=_encode(list(node.args)), kwargs={k: _encode(v) for k, v in node.kwargs.items()}))
        elif node.op == "output":
            out = node.args[0]
            output = _encode(out[0] if isinstance(out, (list, tuple)) and len(out) == 1 else out)
        else:
            raise GraphError(f"unexpected node kind {node.op} in the trace")
    return GraphSpec(mode=mode, batch=batch, seq_len=seq_len, inputs=inputs, nodes=nodes, output=output)


# -- the judge's side ----------------------------------------------------------------------------
def _resolve(target: str, where: str) -> Callable[..., Any]:
    if target in _SPECIAL:
        return _SPECIAL[target]
    parts = target.split(".")
    if len(parts) != 3 or parts[0] != "aten":
        raise GraphError(f"{where}: operator {target!r} is not an ATen operator")
    _, op, overload = parts
    if op in DENIED_OPS or not op.replace("_", "").isalnum():
        raise GraphError(f"{where}: operator aten.{op} is not allowed in a design graph")
    try:
        packet = getattr(torch.ops.aten, op)
        fn = getattr(packet, overload)
    except (AttributeError, RuntimeError) as exc:
        raise GraphError(f"{where}: unknown operator {target!r}") from exc
    if not isinstance(fn, torch._ops.OpOverload):
        raise GraphError(f"{where}: {target!r} is not an operator overload")
    return fn


def _written_args(fn: Callable[..., Any]) -> tuple[int | str, ...]:
    """Positions (or keyword names) of the arguments an operator writes to, from its schema."""
    schema = getattr(fn, "_schema", None)
    if schema is None:
        return ()
    out: list[int | str] = []
    for i, arg in enumerate(schema.arguments):
        info = arg.alias_info
        if info is not None and info.is_write:
            out.append(arg.name if arg.kwarg_only else i)
    return tuple(out)


class _Compiled:
    """A validated graph: resolved operators and argument references checked in order."""

    def __init__(self, spec: GraphSpec, n_state: int, constants: dict[str, torch.Tensor], where: str) -> None:
        self.spec = spec
        if len(spec.inputs) != n_state + 1:
            raise GraphError(f"{where}: {len(spec.inputs)} inputs, expected {n_state} weights and the tokens")
        known = set(spec.inputs)
        self.steps: list[tuple[str, Callable[..., Any], list[Any], dict[str, Any], bool]] = []
        self.mutating: dict[int, tuple[int | str, ...]] = {}  # step -> the arguments it writes to
        self.constants = constants
        for i, node in enumerate(spec.nodes):
            at = f"{where} node {i} ({node.name})"
            if node.name in known:
                raise GraphError(f"{at}: duplicate name")
            self._check_refs(node.args, known, at)
            self._check_refs(list(node.kwargs.values()), known, at)
            if node.target == "constant":
                key = node.args[0] if node.args else None
                if key not in constants:
                    raise GraphError(f"{at}: missing constant {key!r}")
                self.steps.append((node.name, lambda k=key: constants[k], [], {}, False))
            elif node.target == "set_grad_enabled":
                if node.args not in ([True], [False]):
                    raise GraphError(f"{at}: set_grad_enabled takes one bool")
                self.steps.append((node.name, torch._C._set_grad_enabled, node.args, {}, False))
            else:
                fn = _resolve(node.target, at)
                fresh = isinstance(fn, torch._ops.OpOverload) and "empty" in fn._opname
                self.steps.append((node.name, fn, node.args, node.kwargs, fresh))
                writes = _written_args(fn)
                if writes:
                    self.mutating[len(self.steps) - 1] = writes
            known.add(node.name)
        self._check_refs([spec.output], known, f"{where} output")

    @staticmethod
    def _check_refs(value: Any, known: set[str], at: str) -> None:
        if isinstance(value, list):
            for v in value:
                _Compiled._check_refs(v, known, at)
        elif isinstance(value, dict):
            if len(value) != 1:
                raise GraphError(f"{at}: malformed argument {value!r:.80}")
            (key, item), = value.items()
            if key == "$node" and item not in known:
                raise GraphError(f"{at}: refers to {item!r} before it is computed")
            if key in _ENUMS and item not in _ENUMS[key]:
                raise GraphError(f"{at}: unknown {key[1:]} {item!r}")
            if key not in ("$node", "$float", "$device", *_ENUMS):
                raise GraphError(f"{at}: unknown argument kind {key!r}")
            if key == "$float" and item not in ("inf", "-inf", "nan"):
                raise GraphError(f"{at}: bad float {item!r}")

    def run(self, state: list[torch.Tensor], tokens: torch.Tensor,
            observe: Callable[[NodeSpec, Any], bool] | None = None) -> torch.Tensor | None:
        """Run the graph; ``observe(node, output)`` returning True stops it early (result None)."""
        grad = torch.is_grad_enabled()
        try:
            result = self._steps(state, tokens, observe)
        finally:
            torch.set_grad_enabled(grad)
        if result is not None and not isinstance(result, torch.Tensor):
            raise GraphError(f"the graph returned {type(result).__name__}, not a tensor")
        return result

    def _steps(self, state: list[torch.Tensor], tokens: torch.Tensor,
               observe: Callable[[NodeSpec, Any], bool] | None) -> Any:
        # no try block and no storage pointers unless the graph writes in place: torch.compile
        # traces this loop (graphs exported from the usual designs never write in place)
        env: dict[str, Any] = dict(zip(self.spec.inputs, [*state, tokens]))
        device = tokens.device
        protected = _storages([*state, tokens, *self.constants.values()]) if self.mutating else set()
        for i, (name, fn, args, kwargs, fresh) in enumerate(self.steps):
            a = _decode(args, env, device)
            kw = {k: _decode(v, env, device) for k, v in kwargs.items()}
            if i in self.mutating:
                _guard_writes(name, fn, self.mutating[i], a, kw, protected)
            out = fn(*a, **kw)
            if fresh and isinstance(out, torch.Tensor):
                out = out.zero_()  # never hand out uninitialised memory
            env[name] = out
            if observe is not None and observe(self.spec.nodes[i], out):
                return None
        return _decode(self.spec.output, env, device)


def _storages(tensors: list[torch.Tensor]) -> set[int]:
    """The storage addresses of ``tensors`` (weights, buffers, constants, tokens)."""
    return {t.untyped_storage().data_ptr() for t in tensors}


def _guard_writes(name: str, fn: Any, writes: tuple[int | str, ...], args: list[Any], kwargs: dict[str, Any],
                  protected: set[int]) -> None:
    """Refuse an in-place operator whose written argument shares storage with ``protected``."""
    for w in writes:
        target = (args[w] if w < len(args) else None) if isinstance(w, int) else kwargs.get(w)
        if isinstance(target, torch.Tensor) and target.untyped_storage().data_ptr() in protected:
            raise GraphError(f"node {name}: {fn} writes into the weights, a buffer or the input "
                             f"tokens; a design graph must be a pure function of them")


def _open_nofollow(path: Path, limit: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise GraphError(f"{path.name} is {size} bytes (limit {limit})")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)


class GraphLM(nn.Module):
    """An LM run from a graph bundle: ``forward(idx) -> logits``, ``loss``, ``hidden_states``.

    The head is ``hidden @ wte.weight.T``, computed here. ``train()``/``eval()`` pick the graph of
    that mode; a batch is split into the traced batch size and shorter sequences are right-padded
    to the shortest traced length that holds them (sound once the graphs are known causal).
    """

    def __init__(self, bundle: GraphBundle, tensors: dict[str, torch.Tensor], where: str = "graph",
                 weight_set: str | None = None) -> None:
        super().__init__()
        if bundle.version != GRAPH_VERSION:
            raise GraphError(f"{where}: graph version {bundle.version}, expected {GRAPH_VERSION}")
        prefix = f"{weight_set}/" if weight_set else ""
        names = [*bundle.params, *bundle.buffers]
        missing = [n for n in names if prefix + n not in tensors]
        if missing:
            raise GraphError(f"{where}: weights file lacks {prefix}{missing[0]!r}")
        if EMBEDDING not in bundle.params:
            raise GraphError(f"{where}: no trainable {EMBEDDING!r}")
        self.vocab_size, self.d_model = bundle.vocab_size, bundle.d_model
        # the weights live under their own names, so state_dict() matches the design's LM
        self._slots: list[tuple[nn.Module, str]] = []
        for i, n in enumerate(names):
            *path, leaf = n.split(".")
            owner: nn.Module = self
            try:
                for part in path:
                    if part not in owner._modules:
                        owner.add_module(part, nn.Module())
                    owner = owner._modules[part]
                t = tensors[prefix + n].clone()
                if i < len(bundle.params):
                    owner.register_parameter(leaf, nn.Parameter(t, requires_grad=t.is_floating_point()))
                else:
                    owner.register_buffer(leaf, t)
            except (KeyError, TypeError, AttributeError) as exc:
                raise GraphError(f"{where}: weight name {n!r} is not usable: {exc}") from exc
            self._slots.append((owner, leaf))
        emb = self.get_parameter(EMBEDDING)
        if tuple(emb.shape) != (bundle.vocab_size, bundle.d_model):
            raise GraphError(f"{where}: {EMBEDDING} has shape {tuple(emb.shape)}, expected "
                             f"{(bundle.vocab_size, bundle.d_model)}")
        constants = {k: tensors[f"const/{k}"] for k in bundle.constants if f"const/{k}" in tensors}
        self.graphs = [_Compiled(g, len(names), constants, f"{where} graph {i} ({g.mode}, T={g.seq_len})")
                       for i, g in enumerate(bundle.graphs)]
        modes = {g.spec.mode for g in self.graphs}
        if modes != {"train", "eval"}:
            raise GraphError(f"{where}: needs a train and an eval graph, has {sorted(modes)}")
        self.context_len = max(g.spec.seq_len for g in self.graphs)

    @property
    def embedding(self) -> torch.Tensor:
        return self.get_parameter(EMBEDDING)

    def lengths(self, mode: Mode) -> list[int]:
        return sorted({g.spec.seq_len for g in self.graphs if g.spec.mode == mode})

    def _graph(self, length: int) -> _Compiled:
        mode = "train" if self.training else "eval"
        best: _Compiled | None = None  # the shortest that holds ``length`` (a plain loop: torch.compile traces it)
        for g in self.graphs:
            if g.spec.mode == mode and g.spec.seq_len >= length and (best is None or g.spec.seq_len < best.spec.seq_len):
                best = g
        if best is None:
            raise GraphError(f"no {mode} graph holds {length} tokens (traced: {self.lengths(mode)})")
        return best

    def _state(self) -> list[torch.Tensor]:
        return [getattr(owner, leaf) for owner, leaf in self._slots]

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.dim() != 2:
            raise GraphError(f"tokens must be (batch, length), got {tuple(idx.shape)}")
        B, T = idx.shape
        g = self._graph(T)
        Bg, Tg = g.spec.batch, g.spec.seq_len
        state = self._state()
        outs = []
        for lo in range(0, B, Bg):
            chunk = idx[lo: lo + Bg]
            n = chunk.shape[0]
            if n < Bg or T < Tg:
                chunk = F.pad(chunk, (0, Tg - T, 0, Bg - n))
            h = g.run(state, chunk)
            if h is None or tuple(h.shape) != (Bg, Tg, self.d_model):
                raise GraphError(f"the graph returned shape {None if h is None else tuple(h.shape)}, "
                                 f"expected {(Bg, Tg, self.d_model)}")
            outs.append(h[:n, :T])
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.hidden_states(idx)
        return F.linear(h, self.embedding.to(h.dtype))

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self(idx)
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.embedding.numel() if non_embedding else n


def load_bundle(directory: str | Path) -> tuple[GraphBundle, dict[str, torch.Tensor]]:
    """Read a bundle written by :func:`export_lm` (no symlinks followed, sizes capped)."""
    d = Path(directory)
    try:
        raw = _open_nofollow(d / SPEC_FILE, MAX_SPEC_BYTES)
        bundle = GraphBundle.model_validate_json(raw)
        tensors = load_tensors(_open_nofollow(d / WEIGHTS_FILE, 64 * 2**30))
    except GraphError:
        raise
    except OSError as exc:
        raise GraphError(f"{d}: cannot read the graph bundle: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise GraphError(f"{d / SPEC_FILE}: not a graph bundle: {str(exc).splitlines()[0][:200]}") from exc
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise GraphError(f"{d / WEIGHTS_FILE}: unreadable weights: {exc}") from exc
    return bundle, tensors


def load_graph_lm(directory: str | Path, weight_set: str | None = None) -> GraphLM:
    """The :class:`GraphLM` of a bundle directory (raises :class:`GraphError`)."""
    bundle, tensors = load_bundle(directory)
    return GraphLM(bundle, tensors, where=str(Path(directory) / SPEC_FILE), weight_set=weight_set)
