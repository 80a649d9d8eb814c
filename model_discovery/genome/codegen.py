"""Genome -> unit source: one self-contained GAU file per genome, in the catalogue's style.

The generated file holds one ``GAUBase`` subclass whose ``GENOME`` class attribute records the
genome it was made from, a docstring saying what it computes, and only the code its genes need
(no branches for options the genome does not use). Recurrent token mixers get a chunk-wise
``chunked`` method beside a step-by-step ``recurrent`` reference.

Every generated unit decodes without replay (see ``model_discovery/gau/runtime.py``): channel
units are ``positionwise``; a mixer's ``_step`` computes the new positions from what its decoding
state keeps (a conv tail, the last input, keys and values, a state matrix, the inner sequence)
and ``_forward`` is that step from an empty state, so decoding and the full forward share one
code path.
"""

from __future__ import annotations

import pprint
import textwrap

from model_discovery.genome.spec import (Attention, CausalConv, ChannelGenome, DataDecay, DeltaRule, Dense, Gate,
                                         Gated, Grouped, LinearRecurrence, LongConv, LowRank, MixerGenome, Mix, NoDecay, Plain,
                                         ShortConv, StaticDecay, Sum, TokenShift, genome_fingerprint)

HEADER = '''"""{summary}"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model_discovery.gau.runtime import GAUBase

'''

ACTIVATIONS: dict[str, str] = {
    "gelu": "F.gelu({})", "silu": "F.silu({})", "relu": "F.relu({})", "relu2": "F.relu({}).square()",
    "sigmoid": "torch.sigmoid({})",
}
FEATURE_MAPS: dict[str, str] = {"elu1": "F.elu({}) + 1", "relu": "F.relu({})", "silu": "F.silu({})"}
_PREFIX: dict[str, str] = {"attention": "Attn", "linear_recurrence": "LinRec", "delta_rule": "Delta",
                           "conv": "ConvMix", "long_conv": "LongConv", "dense": "Mlp", "gated": "Glu", "grouped": "GroupMlp"}


def unit_name(genome: MixerGenome | ChannelGenome) -> str:
    """Short class name of a generated unit: its main primitive plus a genome hash, e.g. ``LinRec3fa9c``."""
    main = genome.token_mixer.kind if isinstance(genome, MixerGenome) else genome.structure.kind
    return f"{_PREFIX[main]}{genome_fingerprint(genome)[:5]}"


def _act(name: str, arg: str) -> str:
    return ACTIVATIONS[name].format(arg)


def _block(text: str, indent: int = 8) -> list[str]:
    return textwrap.indent(textwrap.dedent(text).strip("\n"), " " * indent).splitlines()


# -- descriptions -------------------------------------------------------------------------------
def describe(genome: MixerGenome | ChannelGenome) -> str:
    """One paragraph saying what a unit generated from ``genome`` computes."""
    if isinstance(genome, ChannelGenome):
        s = genome.structure
        if isinstance(s, Dense):
            return f"Position-wise MLP ``W_out {s.activation}(W_in x)`` with hidden width {s.mult:g} x d."
        if isinstance(s, Gated):
            return f"Gated MLP ``W_out ({s.activation}(W_gate x) * W_up x)`` with hidden width {s.mult:g} x d."
        return (f"MLP with a block-diagonal input projection in {s.groups} groups, {s.activation}, and a dense "
                f"output projection; hidden width {s.mult:g} x d.")
    parts = [_describe_featurizer(genome), _describe_mixer(genome), _describe_combine(genome)]
    return " ".join(parts)


def _describe_featurizer(genome: MixerGenome) -> str:
    f = genome.featurizer
    what = "v" if isinstance(genome.token_mixer, (CausalConv, LongConv)) else "q, k, v"
    if isinstance(f, LowRank):
        return f"Inputs {what} come from x through a rank-{f.rank} bottleneck."
    if isinstance(f, ShortConv):
        return f"Inputs {what} are a projection of x followed by a causal depthwise conv of {f.width} taps and SiLU."
    if isinstance(f, TokenShift):
        return f"Inputs {what} are a projection of x mixed per channel with the previous token (token shift)."
    return f"Inputs {what} are one projection of x."


def _describe_mixer(genome: MixerGenome) -> str:
    m = genome.token_mixer
    if isinstance(m, Attention):
        span = "all previous tokens" if m.window == 0 else "the last ``window`` tokens"
        return f"Causal softmax attention over {span} in n_head heads{' with RMS-normed q and k' if m.qk_norm else ''}."
    if isinstance(m, LinearRecurrence):
        fmap = "" if m.feature_map == "identity" else f" after a {m.feature_map} feature map on q and k"
        return (f"Per head, state ``S_t = a_t * S_{{t-1}} + k_t^T v_t`` and output ``q_t S_t``{fmap}; "
                f"{_describe_decay(m)}; keys are {m.key_ratio:g} x d wide; output RMS-normed per head. "
                "Computed chunk-wise (``chunked``); ``recurrent``, the step-by-step reference, decodes short chunks.")
    if isinstance(m, DeltaRule):
        fmap = "SiLU then L2 norm" if m.feature_map == "silu" else "L2 norm"
        return ("Per head, delta-rule state ``S_t = S_{t-1} + beta_t k_t^T (v_t - k_t S_{t-1})`` with "
                f"``beta_t = sigmoid(W_b x_t)``, {fmap} on q and k, output ``q_t S_t`` RMS-normed per head. "
                "Computed chunk-wise (``chunked``, WY form); ``recurrent``, the step-by-step reference, "
                "decodes short chunks.")
    if isinstance(m, CausalConv):
        return f"A causal depthwise convolution of {m.width} taps mixes positions."
    return ("A causal long convolution (FFT) with an implicit per-channel filter "
            "``exp(-r t) cos(w t)`` mixes positions.")


def _describe_decay(m: LinearRecurrence) -> str:
    d = m.decay
    if isinstance(d, NoDecay):
        return "no decay (a_t = 1)"
    per = "per key channel" if d.per_channel else "per head"
    if isinstance(d, StaticDecay):
        return f"a learned constant decay {per}"
    form = "logsigmoid(z_t)/16" if d.parameterisation == "logsigmoid" else "-softplus(z_t) * exp(rate)"
    return f"input-dependent decay {per}, log a_t = {form}"


def _describe_combine(genome: MixerGenome) -> str:
    c = genome.combine
    if isinstance(c, Gate):
        return f"The output is gated by ``{c.activation}(W_g x)`` and projected."
    if isinstance(c, Sum):
        return "The value input is added to the output before the projection."
    if isinstance(c, Mix):
        return "Output and value input are interpolated per channel (learned) before the projection."
    return "The output is projected back to d."


# -- generation ---------------------------------------------------------------------------------
def generate(genome: MixerGenome | ChannelGenome, name: str | None = None) -> str:
    """The source of one unit file implementing ``genome`` (class ``name``, default :func:`unit_name`)."""
    name = name or unit_name(genome)
    summary = describe(genome)
    lines = HEADER.format(summary=f"{name}: generated from a unit genome.").splitlines()
    lines += ["", f"class {name}(GAUBase):"]
    doc = textwrap.fill(summary, 92, break_on_hyphens=False).splitlines()
    lines += ['    """' + doc[0]] + ["    " + line for line in doc[1:]]
    lines[-1] += '"""'
    lines += ["", "    GENOME = " + _literal(genome.model_dump(mode="json"), 4), ""]
    lines += _channel(genome) if isinstance(genome, ChannelGenome) else _mixer(genome)
    source = "\n".join(lines).rstrip() + "\n"
    for module, used in (("import math\n\n", "math."), ("import torch.nn.functional as F\n", "F.")):
        if used not in source.split("class ", 1)[1]:
            source = source.replace(module, "", 1)
    return source


def _literal(data: dict, indent: int) -> str:
    text = pprint.pformat(data, width=100 - indent - 9, sort_dicts=True)
    return textwrap.indent(text, " " * (indent + 9)).lstrip()


def _channel(genome: ChannelGenome) -> list[str]:
    s = genome.structure
    init = ["    positionwise = True  # decoding feeds it the new positions alone", "",
            f"    def __init__(self, d_model, block_loc, ctx=None, mult: float = {s.mult!r}, multiple_of: int = 32):",
            "        super().__init__(d_model, block_loc, ctx)"]
    if isinstance(s, Grouped):
        init += _block(f"""
            self.groups = {s.groups}
            hidden = multiple_of * self.groups * math.ceil(mult * d_model / (multiple_of * self.groups))
            self.w_in = nn.Parameter(torch.randn(self.groups, d_model // self.groups, hidden // self.groups)
                                     * (d_model // self.groups) ** -0.5)
            self.w_out = nn.Linear(hidden, d_model, bias=False)
        """)
        fwd = _block(f"""
            B, T, D = X.shape
            h = torch.einsum("btgi,gio->btgo", X.view(B, T, self.groups, D // self.groups), self.w_in.to(X.dtype))
            return self.w_out({_act(s.activation, "h.reshape(B, T, -1)")}), {{}}
        """)
    elif isinstance(s, Gated):
        init += _block("""
            self.hidden = multiple_of * math.ceil(mult * d_model / multiple_of)
            self.w_in = nn.Linear(d_model, 2 * self.hidden, bias=False)
            self.w_out = nn.Linear(self.hidden, d_model, bias=False)
        """)
        fwd = _block(f"""
            gate, up = self.w_in(X).split(self.hidden, dim=-1)
            return self.w_out({_act(s.activation, "gate")} * up), {{}}
        """)
    else:
        init += _block("""
            hidden = multiple_of * math.ceil(mult * d_model / multiple_of)
            self.w_in = nn.Linear(d_model, hidden, bias=False)
            self.w_out = nn.Linear(hidden, d_model, bias=False)
        """)
        fwd = _block(f"""
            return self.w_out({_act(s.activation, "self.w_in(X)")}), {{}}
        """)
    return init + ["", "    def _forward(self, X, **Z):"] + fwd


def _mixer(genome: MixerGenome) -> list[str]:
    m = genome.token_mixer
    args = "d_model, block_loc, ctx=None"
    init: list[str] = ["        super().__init__(d_model, block_loc, ctx)"]
    methods: list[list[str]] = []
    conv = isinstance(m, (CausalConv, LongConv))
    if isinstance(m, Attention):
        args += f", n_head: int = {m.heads}" + (f", window: int = {m.window}" if m.window else "")
        init += _block("""
            if d_model % n_head:
                raise ValueError(f"d_model {d_model} is not divisible by {n_head} heads")
            self.n_head, self.key_dim, self.value_dim = n_head, d_model, d_model
        """)
        if m.window:
            init.append("        self.window = window")
    elif isinstance(m, (LinearRecurrence, DeltaRule)):
        args += f", n_head: int = {m.heads}, chunk_size: int = 16"
        key = f"int(d_model * {m.key_ratio!r})" if isinstance(m, LinearRecurrence) and m.key_ratio != 1.0 else "d_model"
        init += _block(f"""
            self.n_head, self.chunk_size = n_head, chunk_size
            self.key_dim, self.value_dim = {key}, d_model
            if self.key_dim % n_head:
                raise ValueError(f"key width {{self.key_dim}} is not divisible by {{n_head}} heads")
        """)
    else:
        init.append("        self.value_dim = d_model")
    width = "self.value_dim" if conv else "2 * self.key_dim + self.value_dim"
    init_f, method_f, features = _featurizer(genome, width)
    init += init_f
    methods.append(method_f)
    if isinstance(genome.featurizer, ShortConv) or isinstance(m, CausalConv):
        methods.append(_block(_AFTER_TAIL, indent=4))
    step: list[str] = [] if conv else ["        B, T, _ = X.shape"]
    if conv:
        step.append(f"        v = {features}")
        i2, m2, f2 = _conv(m)
    else:
        step += _block(f"""
            H = self.n_head
            q, k, v = {features}.split([self.key_dim, self.key_dim, self.value_dim], dim=-1)
        """)
        if isinstance(m, Attention):
            i2, m2, f2 = _attention(m)
        elif isinstance(m, LinearRecurrence):
            i2, m2, f2 = _recurrence(m)
        else:
            i2, m2, f2 = _delta(m)
    init += i2
    methods += m2
    step += f2
    i3, f3 = _combine(genome)
    init += i3
    step += f3
    out = [f"    def __init__(self, {args}):"] + init
    for method in methods:
        out += [""] + method
    out += ["", "    def _forward(self, X, **Z):", "        return self._step(X, {}, **Z)"]
    doc = textwrap.fill(_describe_state(genome), 92, break_on_hyphens=False).splitlines()
    out += ["", "    def _step(self, X, state, **Z):", '        """' + doc[0]] + ["        " + line for line in doc[1:]]
    out[-1] += '"""'
    out += step
    return out


#: the conv tail shared by a short-conv featurizer and a conv token mixer (each under its own key)
_AFTER_TAIL = '''
    @staticmethod
    def after_tail(x, state, key, n):
        """x (B, C, T) after the last ``n`` inputs kept in ``state[key]`` (zeros at first); keeps the new last ``n``."""
        x = torch.cat([state.get(key, x.new_zeros(x.size(0), x.size(1), n)), x], dim=2)
        state[key] = x[..., x.size(2) - n:]
        return x
'''


def _describe_state(genome: MixerGenome) -> str:
    """What a unit generated from ``genome`` keeps between decoding steps (its ``_step`` docstring)."""
    m, f = genome.token_mixer, genome.featurizer
    if isinstance(m, Attention):
        kept = ["keys and values of " + ("every earlier position" if not m.window else "the last window - 1 positions")]
    elif isinstance(m, (LinearRecurrence, DeltaRule)):
        kept = ["the state matrix per head"]
    elif isinstance(m, CausalConv):
        kept = [f"the last {m.width - 1} values"]
    else:
        kept = ["every value so far"]
    if isinstance(f, ShortConv):
        kept.append(f"the last {f.width - 1} projected inputs")
    elif isinstance(f, TokenShift):
        kept.append("the last input")
    return f"The new positions X; ``state`` keeps {' and '.join(kept)}. ``_forward`` starts from an empty state."


def _featurizer(genome: MixerGenome, width: str) -> tuple[list[str], list[str], str]:
    """(init lines, the ``features`` method, the call that makes the inputs of the new positions in ``_step``)."""
    f = genome.featurizer
    doc = f'        """Inputs of the token mixer, (B, T, {width.replace("self.", "")})."""'
    sig, call = ["    def features(self, X):", doc], "self.features(X)"
    if isinstance(f, LowRank):
        init = _block(f"""
            self.in_down = nn.Linear(d_model, {f.rank}, bias=False)
            self.in_up = nn.Linear({f.rank}, {width}, bias=False)
        """)
        body = ["        return self.in_up(self.in_down(X))"]
    elif isinstance(f, ShortConv):
        init = _block(f"""
            channels = {width}
            self.in_proj = nn.Linear(d_model, channels, bias=False)
            self.in_conv = nn.Conv1d(channels, channels, {f.width}, groups=channels, bias=False)
        """)
        body = _block(f"""
            x = self.after_tail(self.in_proj(X).transpose(1, 2), state, "in_tail", {f.width - 1})
            return F.silu(self.in_conv(x)).transpose(1, 2)
        """)
        sig, call = ["    def features(self, X, state):", doc], "self.features(X, state)"
    elif isinstance(f, TokenShift):
        init = _block(f"""
            self.shift_mix = nn.Parameter(torch.full((d_model,), 0.5))
            self.in_proj = nn.Linear(d_model, {width}, bias=False)
        """)
        body = _block("""
            previous = torch.cat([state.get("in_last", torch.zeros_like(X[:, :1])), X[:, :-1]], dim=1)
            state["in_last"] = X[:, -1:]
            return self.in_proj(X + self.shift_mix.to(X.dtype) * (previous - X))
        """)
        sig, call = ["    def features(self, X, state):", doc], "self.features(X, state)"
    else:
        init = [f"        self.in_proj = nn.Linear(d_model, {width}, bias=False)"]
        body = ["        return self.in_proj(X)"]
    return init, sig + body, call


_HEADS = "q, k, v = (t.view(B, T, H, -1).transpose(1, 2){cast} for t in (q, k, v))"
_MERGE = "y = y.transpose(1, 2).reshape(B, T, self.value_dim){cast}"
_RMS = "y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-5) * self.norm_weight"

_ATTEND = '''
def attend(self, q, k, v, state):
    """Attention of the new q over the cached and new k, v (B, H, T, head_dim); caches k, v in ``state``."""
    if "k" in state:
        k, v = torch.cat([state["k"], k], dim=2), torch.cat([state["v"], v], dim=2)
{keep}
    T, S = q.size(2), k.size(2)
{attend}
'''
_GLOBAL_KEEP = '''
    state["k"], state["v"] = k, v
'''
_GLOBAL_ATTEND = '''
    if T == S:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    causal = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal)
'''
_LOCAL_KEEP = '''
    keep = max(k.size(2) - self.window + 1, 0)
    state["k"], state["v"] = k[:, :, keep:], v[:, :, keep:]
'''
_LOCAL_ATTEND = '''
    i = torch.arange(S - T, S, device=q.device)[:, None]
    j = torch.arange(S, device=q.device)[None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=(j <= i) & (i - j < self.window))
'''


def _fill(template: str, **parts: str) -> str:
    """``template`` with each ``{name}`` line replaced by the (dedented, indented) lines of ``parts[name]``."""
    text = textwrap.dedent(template).strip("\n")
    for name, part in parts.items():
        text = text.replace("{" + name + "}", textwrap.indent(textwrap.dedent(part).strip("\n"), "    "))
    return text


def _attention(m: Attention) -> tuple[list[str], list[list[str]], list[str]]:
    step = ["        " + _HEADS.format(cast="")]
    if m.qk_norm:
        step.append("        q, k = (t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6) for t in (q, k))")
    step += ["        y = self.attend(q, k, v, state)", "        " + _MERGE.format(cast="")]
    keep, attend = (_LOCAL_KEEP, _LOCAL_ATTEND) if m.window else (_GLOBAL_KEEP, _GLOBAL_ATTEND)
    method = textwrap.indent(_fill(_ATTEND, keep=keep, attend=attend), "    ").splitlines()
    return [], [method], step


def _decay_init(d: DataDecay | StaticDecay) -> list[str]:
    if isinstance(d, StaticDecay):
        shape = "self.key_dim" if d.per_channel else "n_head"
        lines = [f"        self.decay_logit = nn.Parameter(torch.linspace(2.0, 6.0, {shape}))"]
        return lines
    out = []
    if d.per_channel:
        out += _block("""
            self.decay_down = nn.Linear(d_model, 16, bias=False)
            self.decay_up = nn.Linear(16, self.key_dim, bias=True)
        """)
    else:
        out.append("        self.decay_proj = nn.Linear(d_model, n_head, bias=True)")
    if d.parameterisation == "softplus":
        shape = "self.key_dim // n_head," if d.per_channel else "n_head, 1"
        out.append(f"        self.decay_log_rate = nn.Parameter(torch.full(({shape}), -2.0))")
    return out


def _decay_forward(d: DataDecay | StaticDecay) -> list[str]:
    """Lines that set ``log_a``: (B, H, T, dk) per channel, (B, H, T) per head."""
    if isinstance(d, StaticDecay):
        if d.per_channel:
            return ["        log_a = F.logsigmoid(self.decay_logit).view(1, H, 1, -1).expand(B, H, T, -1)"]
        return ["        log_a = F.logsigmoid(self.decay_logit).view(1, H, 1).expand(B, H, T)"]
    if d.per_channel:
        z = "self.decay_up(self.decay_down(X)).view(B, T, H, -1).transpose(1, 2).float()"
    else:
        z = "self.decay_proj(X).transpose(1, 2).float()"
    lines = [f"        z = {z}"]
    if d.parameterisation == "logsigmoid":
        lines.append("        log_a = F.logsigmoid(z) / 16")
    else:
        lines.append("        log_a = -F.softplus(z) * torch.exp(self.decay_log_rate)")
    return lines


_PAD_CHUNKS = """
    b, h, T, dk = q.shape
    cs = self.chunk_size
    pad = (-T) % cs
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
"""

_START = "state = q.new_zeros(b, h, dk, v.size(-1)) if state is None else state"

_RECURRENT = '''
@staticmethod
def recurrent(q, k, v{args}, state=None):
    """Step-by-step reference of :meth:`chunked` (and the decoding step for short chunks)."""
    b, h, T, dk = q.shape
    {start}
    outs = []
    for t in range(T):
        state = {decay}state + k[:, :, t, :, None] * v[:, :, t, None, :]
        outs.append((q[:, :, t, None, :] @ state).squeeze(-2))
    return torch.stack(outs, dim=2), state
'''
#: how the state decays in one step of :data:`_RECURRENT`: no decay, per head, per key channel
_STEP_DECAY: dict[str, str] = {"none": "", "scalar": "torch.exp(log_a[:, :, t, None, None]) * ",
                               "vector": "torch.exp(log_a[:, :, t])[..., None] * "}

_CHUNKED_NONE = '''
def chunked(self, q, k, v, state=None):
    """q, k (b,h,t,dk); v (b,h,t,dv); state (b,h,dk,dv) or None -> (outputs (b,h,t,dv), final state); any length."""
{pad}
    n = q.size(2) // cs
    q, k, v = (t.reshape(b, h, n, cs, t.size(-1)) for t in (q, k, v))
    causal = torch.tril(torch.ones(cs, cs, dtype=torch.bool, device=q.device))
    out = (q @ k.transpose(-1, -2)).masked_fill(~causal, 0) @ v
    {start}
    inter = []
    for c in range(n):
        inter.append(q[:, :, c] @ state)
        state = state + k[:, :, c].transpose(-1, -2) @ v[:, :, c]
    return (out + torch.stack(inter, dim=2)).reshape(b, h, n * cs, -1)[:, :, :T], state
'''

_CHUNKED_SCALAR = '''
def chunked(self, q, k, v, log_a, state=None):
    """q, k (b,h,t,dk); v (b,h,t,dv); log_a (b,h,t); state (b,h,dk,dv) or None -> (outputs, final state); any length."""
{pad}
        log_a = F.pad(log_a, (0, pad))
    n = q.size(2) // cs
    q, k, v = (t.reshape(b, h, n, cs, t.size(-1)) for t in (q, k, v))
    cum = torch.cumsum(log_a.reshape(b, h, n, cs), dim=-1)  # inclusive log decay from chunk start
    causal = torch.tril(torch.ones(cs, cs, dtype=torch.bool, device=q.device))
    decay = torch.exp((cum[..., :, None] - cum[..., None, :]).masked_fill(~causal, -math.inf))
    out = ((q @ k.transpose(-1, -2)) * decay) @ v
    {start}
    inter = []
    for c in range(n):
        inter.append((q[:, :, c] * torch.exp(cum[:, :, c, :, None])) @ state)
        last = cum[:, :, c, -1:]  # (b,h,1)
        kd = k[:, :, c] * torch.exp(last - cum[:, :, c])[..., None]
        state = torch.exp(last)[..., None] * state + kd.transpose(-1, -2) @ v[:, :, c]
    return (out + torch.stack(inter, dim=2)).reshape(b, h, n * cs, -1)[:, :, :T], state
'''

_CHUNKED_VECTOR = '''
def chunked(self, q, k, v, log_a, state=None):
    """q, k, log_a (b,h,t,dk); v (b,h,t,dv); state (b,h,dk,dv) or None -> (outputs, final state); any length."""
{pad}
        log_a = F.pad(log_a, (0, 0, 0, pad))
    n = q.size(2) // cs
    q, k, v, log_a = (t.reshape(b, h, n, cs, t.size(-1)) for t in (q, k, v, log_a))
    cum = torch.cumsum(log_a, dim=-2)  # inclusive log decay from chunk start
    diff = cum[..., :, None, :] - cum[..., None, :, :]  # (b,h,n,i,j,dk)
    causal = torch.tril(torch.ones(cs, cs, dtype=torch.bool, device=q.device))
    diff = diff.masked_fill(~causal[:, :, None], -math.inf)
    out = torch.einsum("bhnid,bhnjd,bhnijd->bhnij", q, k, torch.exp(diff)) @ v
    {start}
    inter = []
    for c in range(n):
        inter.append((q[:, :, c] * torch.exp(cum[:, :, c])) @ state)
        last = cum[:, :, c, -1:]  # (b,h,1,dk)
        kd = k[:, :, c] * torch.exp(last - cum[:, :, c])
        state = torch.exp(last).transpose(-1, -2) * state + kd.transpose(-1, -2) @ v[:, :, c]
    return (out + torch.stack(inter, dim=2)).reshape(b, h, n * cs, -1)[:, :, :T], state
'''

_CHUNKED_DELTA = '''
def chunked(self, q, k, v, beta, state=None):
    """q, k (b,h,t,dk); v (b,h,t,dv); beta (b,h,t); state or None -> (outputs, final state), chunk-wise in WY form."""
{pad}
        beta = F.pad(beta, (0, pad))
    n = q.size(2) // cs
    q, k, v = (t.reshape(b, h, n, cs, t.size(-1)) for t in (q, k, v))
    beta = beta.reshape(b, h, n, cs, 1)
    k_beta, v_beta = k * beta, v * beta
    upper = torch.triu(torch.ones(cs, cs, dtype=torch.bool, device=q.device))
    attn = -(k_beta @ k.transpose(-1, -2)).masked_fill(upper, 0)
    rows = [attn[..., 0, :]]  # invert (I - attn) row by row (forward substitution)
    for i in range(1, cs):
        previous = torch.stack(rows, dim=-2)
        rows.append(attn[..., i, :] + (attn[..., i, :i, None] * previous).sum(-2))
    attn = torch.stack(rows, dim=-2) + torch.eye(cs, dtype=q.dtype, device=q.device)
    u, w = attn @ v_beta, attn @ k_beta
    strict = torch.triu(torch.ones(cs, cs, dtype=torch.bool, device=q.device), diagonal=1)
    {start}
    out = []
    for c in range(n):
        qc, kc = q[:, :, c], k[:, :, c]
        uc = u[:, :, c] - w[:, :, c] @ state
        out.append(qc @ state + (qc @ kc.transpose(-1, -2)).masked_fill(strict, 0) @ uc)
        state = state + kc.transpose(-1, -2) @ uc
    return torch.stack(out, dim=2).reshape(b, h, n * cs, -1)[:, :, :T], state
'''

_RECURRENT_DELTA = '''
@staticmethod
def recurrent(q, k, v, beta, state=None):
    """Step-by-step reference of :meth:`chunked` (and the decoding step for short chunks)."""
    b, h, T, dk = q.shape
    {start}
    outs = []
    for t in range(T):
        kt = k[:, :, t]
        delta = v[:, :, t] - (kt[..., None, :] @ state).squeeze(-2)
        state = state + beta[:, :, t, None, None] * kt[..., :, None] * delta[..., None, :]
        outs.append((q[:, :, t, None, :] @ state).squeeze(-2))
    return torch.stack(outs, dim=2), state
'''

#: ``_step`` lines that run the recurrence: step by step for a short chunk after a state, else chunk-wise
_SCAN = '''
if "S" in state and T < self.chunk_size:
    y, state["S"] = self.recurrent(q, k, v{args}, state["S"])
else:
    y, state["S"] = self.chunked(q, k, v{args}, state.get("S"))
'''


def _method(template: str) -> list[str]:
    text = _fill(template, pad=_PAD_CHUNKS).replace("{start}", _START)
    return textwrap.indent(text, "    ").splitlines()


def _recurrence(m: LinearRecurrence) -> tuple[list[str], list[list[str]], list[str]]:
    d = m.decay
    init = [] if isinstance(d, NoDecay) else _decay_init(d)
    init.append("        self.norm_weight = nn.Parameter(torch.ones(self.value_dim // n_head))")
    step = ["        " + _HEADS.format(cast=".float()")]
    if m.feature_map != "identity":
        fmap = FEATURE_MAPS[m.feature_map]
        step.append(f"        q, k = {fmap.format('q')}, {fmap.format('k')}")
    step.append("        q = q * (self.key_dim // H) ** -0.5")
    if isinstance(d, NoDecay):
        chunked, form, args = _CHUNKED_NONE, "none", ""
    else:
        step += _decay_forward(d)
        args = ", log_a"
        chunked, form = (_CHUNKED_VECTOR, "vector") if d.per_channel else (_CHUNKED_SCALAR, "scalar")
    recurrent = _RECURRENT.replace("{args}", args).replace("{decay}", _STEP_DECAY[form])
    step += _block(_SCAN.replace("{args}", args))
    step += ["        " + _RMS, "        " + _MERGE.format(cast=".to(X.dtype)")]
    return init, [_method(chunked), _method(recurrent)], step


def _delta(m: DeltaRule) -> tuple[list[str], list[list[str]], list[str]]:
    init = _block("""
        self.beta_proj = nn.Linear(d_model, n_head, bias=True)
        self.norm_weight = nn.Parameter(torch.ones(self.value_dim // n_head))
    """)
    step = ["        " + _HEADS.format(cast=".float()")]
    if m.feature_map == "silu":
        step.append("        q, k = F.silu(q), F.silu(k)")
    step += _block("""
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        beta = torch.sigmoid(self.beta_proj(X)).transpose(1, 2).float()
    """)
    step += _block(_SCAN.replace("{args}", ", beta"))
    step += ["        " + _RMS, "        " + _MERGE.format(cast=".to(X.dtype)")]
    return init, [_method(_CHUNKED_DELTA), _method(_RECURRENT_DELTA)], step


_LONG_CONV = '''
def long_conv(self, v, state):
    """Causal convolution with the filter ``exp(-r t) cos(w t)`` at the new inputs v (B, T, C), after the
    earlier ones kept in ``state``: by FFT (length 2L) for chunks over 16 positions, else directly."""
    seen = v if "seen" not in state else torch.cat([state["seen"], v], dim=1)
    state["seen"] = seen
    T, L = v.size(1), seen.size(1)
    t = torch.arange(L, device=v.device, dtype=torch.float32)[:, None]
    filt = torch.exp(-torch.exp(self.filter_log_rate) * t) * torch.cos(self.filter_freq * t)
    if T > 16:
        spectrum = torch.fft.rfft(seen.float(), n=2 * L, dim=1) * torch.fft.rfft(filt, n=2 * L, dim=0)
        return torch.fft.irfft(spectrum, n=2 * L, dim=1)[:, L - T:L].to(v.dtype)
    lag = torch.arange(L - T, L, device=v.device)[:, None] - torch.arange(L, device=v.device)[None, :]
    kernel = filt[lag.clamp(min=0)].masked_fill((lag < 0)[..., None], 0.0)  # (T, L, C)
    return torch.einsum("tlc,blc->btc", kernel, seen.float()).to(v.dtype)
'''


def _conv(m: CausalConv | LongConv) -> tuple[list[str], list[list[str]], list[str]]:
    if isinstance(m, CausalConv):
        init = [f"        self.conv = nn.Conv1d(d_model, d_model, {m.width}, groups=d_model, bias=False)"]
        tail = f'self.after_tail(v.transpose(1, 2), state, "conv_tail", {m.width - 1})'
        step = [f"        y = self.conv({tail}).transpose(1, 2)"]
        return init, [], step
    init = _block("""
        self.filter_log_rate = nn.Parameter(torch.linspace(-5.0, -1.0, d_model))
        self.filter_freq = nn.Parameter(torch.linspace(0.0, 1.0, d_model))
    """)
    method = textwrap.indent(_fill(_LONG_CONV), "    ").splitlines()
    return init, [method], ["        y = self.long_conv(v, state)"]


def _combine(genome: MixerGenome) -> tuple[list[str], list[str]]:
    c = genome.combine
    heads = not isinstance(genome.token_mixer, (CausalConv, LongConv))
    init = ["        self.out_proj = nn.Linear(self.value_dim, d_model, bias=False)"]
    if isinstance(c, Gate):
        init.insert(0, "        self.gate = nn.Linear(d_model, self.value_dim, bias=False)")
        return init, [f"        return self.out_proj({_act(c.activation, 'self.gate(X)')} * y), {{}}"]
    merge_v = ["        v = v.transpose(1, 2).reshape(B, T, self.value_dim).to(X.dtype)"] if heads else []
    if isinstance(c, Sum):
        return init, merge_v + ["        return self.out_proj(y + v), {}"]
    if isinstance(c, Mix):
        init.insert(0, "        self.mix_logit = nn.Parameter(torch.full((self.value_dim,), -2.0))")
        return init, merge_v + ["        return self.out_proj(torch.lerp(y, v, torch.sigmoid(self.mix_logit).to(y.dtype))), {}"]
    assert isinstance(c, Plain)
    return init, ["        return self.out_proj(y), {}"]
