"""TTT-Linear: the hidden state is a linear model trained by gradient steps on the sequence itself."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from model_discovery.gau.runtime import GAUBase


class TTTLinear(GAUBase):
    """Per head, an inner weight W is fitted online to map keys to (values - keys) with loss
    ``||k W - (v - k)||^2``; each token's output reads the updated model: ``q + q W_t``.

    Updates are mini-batch gradient descent: inside a mini-batch of ``mini_batch`` tokens all
    gradients are taken at the batch's starting weights W_0, so token t sees
    ``W_t = W_0 - 2 sum_{s<=t} eta_s k_s^T (k_s W_0 - v_s + k_s)`` (the dual form makes this a
    masked matmul). The step size ``eta_t = base_lr * sigmoid(w_lr . x_t)`` is learned per token
    and head; q and k are unit-normalised so steps stay stable. W_0 of the first mini-batch is a
    learned parameter. Output is RMS-normed per head and gated by silu(W_g x).
    :meth:`recurrent` is the token-by-token reference of :meth:`chunked`; both continue from the
    current weights, the weights at the start of the current mini-batch and the position, which
    decoding keeps (:meth:`_step`).
    """

    def __init__(self, d_model, block_loc, ctx=None, n_head: int = 4, mini_batch: int = 16,
                 base_lr: float = 0.5, eps: float = 1e-5):
        super().__init__(d_model, block_loc, ctx)
        if d_model % n_head:
            raise ValueError(f"d_model {d_model} not divisible by n_head {n_head}")
        self.n_head, self.mini_batch, self.base_lr, self.eps = n_head, mini_batch, base_lr, eps
        self.head_dim = d_model // n_head
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.lr_proj = nn.Linear(d_model, n_head, bias=True)
        self.g = nn.Linear(d_model, d_model, bias=False)
        self.o = nn.Linear(d_model, d_model, bias=False)
        self.W0 = nn.Parameter(torch.randn(n_head, self.head_dim, self.head_dim) * 0.02)
        self.norm_weight = nn.Parameter(torch.ones(self.head_dim))

    def chunked(self, q, k, v, eta, W, W_start=None, start=0):
        """q, k, v (b,h,t,d); eta (b,h,t); W (h,d,d) or (b,h,d,d): the weights before the first
        token, at absolute position ``start``; W_start: the weights at the start of its
        mini-batch (needed when ``start`` is inside one) -> outputs q + q W_t of shape (b,h,t,d),
        the weights after the last token and those at the start of its mini-batch."""
        b, h, T, d = q.shape
        mb = self.mini_batch
        lead = start % mb  # earlier tokens of the first mini-batch: zero rows with eta = 0
        pad = (-(lead + T)) % mb
        if lead or pad:
            q, k, v = (F.pad(t, (0, 0, lead, pad)) for t in (q, k, v))
            eta = F.pad(eta, (lead, pad))
        n = q.size(2) // mb
        q, k, v = (t.reshape(b, h, n, mb, d) for t in (q, k, v))
        eta = eta.reshape(b, h, n, mb)
        causal = torch.tril(torch.ones(mb, mb, dtype=torch.bool, device=q.device))
        W = W.expand(b, h, d, d)
        W_grad = W_start.expand(b, h, d, d) if lead else W  # gradients are taken at the batch start
        outs = []
        for c in range(n):
            q_c, k_c, v_c, eta_c = q[:, :, c], k[:, :, c], v[:, :, c], eta[:, :, c]
            err = k_c @ W_grad - (v_c - k_c)  # (b,h,mb,d): prediction error at W_0 of this batch
            attn = (q_c @ k_c.transpose(-1, -2)).masked_fill(~causal, 0.0) * eta_c[..., None, :]
            outs.append(q_c + q_c @ W - 2.0 * attn @ err)
            W_start = W_grad
            W = W - 2.0 * k_c.transpose(-1, -2) @ (eta_c[..., None] * err)
            W_grad = W
        return torch.stack(outs, dim=2).reshape(b, h, n * mb, d)[:, :, lead:lead + T], W, W_start

    def recurrent(self, q, k, v, eta, W, W_start=None, start=0):
        """Token-by-token reference of :meth:`chunked` (explicit weights, same mini-batching,
        same arguments and results)."""
        b, h, T, d = q.shape
        W = W.expand(b, h, d, d)
        W_start = W if W_start is None else W_start.expand(b, h, d, d)
        outs = []
        for t in range(T):
            if (start + t) % self.mini_batch == 0:
                W_start = W
            k_t, q_t = k[:, :, t, None, :], q[:, :, t, None, :]
            grad = 2.0 * k_t.transpose(-1, -2) @ (k_t @ W_start - (v[:, :, t, None, :] - k_t))
            W = W - eta[:, :, t, None, None] * grad
            outs.append((q_t + q_t @ W).squeeze(-2))
        return torch.stack(outs, dim=2), W, W_start

    def _forward(self, X, state=None, **Z):
        """Outputs at the positions of X; decoding passes its ``state`` (a dict, see
        :meth:`_step`), which this continues and updates."""
        B, T, C = X.shape
        H = self.n_head

        def heads(t):
            return t.reshape(B, T, H, -1).transpose(1, 2).float()

        q, k, v = (heads(t) for t in self.qkv(X).split(C, dim=-1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        eta = self.base_lr * torch.sigmoid(self.lr_proj(X)).transpose(1, 2).float()
        if state is None:
            y, _, _ = self.chunked(q, k, v, eta, self.W0.float())
        else:  # one new position: the recurrence; a chunk: the dual form from the state
            scan = self.recurrent if T == 1 else self.chunked
            start = state.get("pos", 0)
            y, state["W"], state["W_start"] = scan(q, k, v, eta, state.get("W", self.W0.float()),
                                                   state.get("W_start"), start)
            state["pos"] = start + T
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps) * self.norm_weight
        y = y.transpose(1, 2).reshape(B, T, C).to(X.dtype)
        return self.o(F.silu(self.g(X)) * y), {}

    def _step(self, X, state, **Z):
        """State: the inner weights W (b, h, d, d), those at the start of the current mini-batch
        and the number of positions consumed."""
        return self._forward(X, state, **Z)
