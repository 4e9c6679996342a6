r"""An opt-in fast path: one autograd Function per layer, with the backward written by hand.

``companion.models`` builds a layer from small PyTorch operations and lets autograd record them.
That is readable, and at large sizes it is fast, but at small ones every step pays a fixed cost
per operation: Python calls it, PyTorch dispatches it, autograd records a node for it, and the
backward pass replays each node. Here the whole sequence is one :class:`torch.autograd.Function`:

- the forward pass runs under no autograd at all, with fewer and larger operations per step,
  writing into buffers allocated once per call (``out=`` and in-place operations);
- the backward pass is the one chapter 10 derives by hand (and :mod:`companion.numpy_lstm` writes
  in NumPy), with everything that does not depend on the chain of states computed for all steps
  at once, before the loop, so that the loop over time makes a few operations per step.

Nothing is compiled, so nothing is recompiled for a new sequence length, batch size or device.

Use it by wrapping a layer; the wrapper shares the layer's parameters::

    layer = companion.models.LSTM(32, 64)      # or torch.nn.LSTM
    fast = companion.fused.fuse(layer)
    output, (h_n, c_n) = fast(x)               # the same function, the same gradients

Supported: RNN (tanh or relu), LSTM and GRU layers of ``companion.models`` or ``torch.nn``, with
any number of layers, with or without biases, time-major or ``batch_first``, batched or not.
Not supported (a clear error): bidirectional layers, packed sequences, ``proj_size``, and dropout
between layers while training.

Forward and backward by hand
----------------------------
The LSTM's forward pass, equations (3.1)-(3.6), with ``a = W_x x_t + b + W_h h_{t-1}`` the four
gates' pre-activations (N, 4H), in the order i, f, g, o::

    i, f, o = σ(a_i), σ(a_f), σ(a_o);  g = tanh(a_g)
    c_t = f ⊙ c_{t-1} + i ⊙ g;  h_t = o ⊙ tanh(c_t)

computed with one σ over all four gates per step: the candidate's rows of the weights and bias
are doubled once per call, so that the σ of its column is s = σ(2 a_g), and tanh(a_g) = 2s − 1
enters (3.5) as ``f ⊙ c_{t-1} + 2 i ⊙ s − i`` (on a CPU, σ costs several times less than tanh).

and its backward pass, chapter 10's (7)-(13), with σ' = σ(1 − σ), tanh' = 1 − tanh²::

    dc   += dh ⊙ o ⊙ tanh'(c_t)                   (7)
    da_o  = dh ⊙ tanh(c_t) ⊙ σ'(a_o)              (8)
    da_i  = dc ⊙ g ⊙ σ'(a_i)                      (9)
    da_f  = dc ⊙ c_{t-1} ⊙ σ'(a_f)                (10)
    da_g  = dc ⊙ i ⊙ tanh'(a_g)                   (11)
    dc_{t-1} = dc ⊙ f;  dh_{t-1} = da W_h + dℓ/dh_{t-1}   (12), (13), (15)

The products on the right of ``dh`` and ``dc`` (``tanh(c_t) ⊙ σ'(a_o)`` and the like) do not
depend on the gradient, so they are computed for all steps at once before the loop; the loop
keeps only what needs ``dh`` and ``dc``. The weight gradients are one matrix product each, after
the loop, over all steps at once: ``dW_h = Σ_t da_tᵀ h_{t-1}``, ``dW_x = Σ_t da_tᵀ x_t``.

The GRU's, in PyTorch's form (5.1)-(5.4), with ``u = W_h h_{t-1} + b_h`` (N, 3H) kept for the
backward pass::

    r = σ(x_r + u_r);  z = σ(x_z + u_z);  n = tanh(x_n + r ⊙ u_n);  h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    dn_pre = dh ⊙ (1 − z) ⊙ tanh'(n)              from (5.4) and (5.3)
    dz_pre = dh ⊙ (h_{t-1} − n) ⊙ σ'(z)           from (5.4) and (5.2)
    dr_pre = dn_pre ⊙ u_n ⊙ σ'(r)                 from (5.3) and (5.1)
    dx     = [dr_pre, dz_pre, dn_pre];  du = [dr_pre, dz_pre, dn_pre ⊙ r]
    dh_{t-1} = dh ⊙ z + du W_h + dℓ/dh_{t-1}

The RNN's, (1.1): ``h_t = tanh(x_t + W_h h_{t-1})``, ``da = dh ⊙ tanh'(h_t)``,
``dh_{t-1} = da W_h + dℓ/dh_{t-1}`` (relu: ``da = dh ⊙ [h_t > 0]``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from companion._layer import batch_major, check_states, time_major
from companion.models import GATE_BLOCKS, folded_bias

__all__ = ["fuse", "FusedLayer", "lstm_sequence", "gru_sequence", "rnn_sequence"]


def _input_projection(x: Tensor, w_ih: Tensor, b: Tensor | None) -> Tensor:
    """``x W_xᵀ + b`` for all T steps in one matrix product: (T, N, G·H), a new buffer."""
    length, batch, _ = x.shape
    flat = x.reshape(length * batch, -1)
    xw = torch.mm(flat, w_ih.t()) if b is None else torch.addmm(b, flat, w_ih.t())
    return xw.view(length, batch, -1)


def _previous_states(h0: Tensor, out: Tensor) -> Tensor:
    """h_{t-1} for t = 1..T: h_0 followed by the outputs but the last, (T, N, H)."""
    return torch.cat([h0.unsqueeze(0), out[:-1]])


def _weight_grads(ctx: Any, d_x: Tensor, x: Tensor, w_ih: Tensor) -> tuple[Any, Any, Any]:
    """The gradients on the input, ``W_x`` and its bias from the pre-activation gradients
    ``d_x`` (T, N, G·H) of all steps: one matrix product each."""
    flat = d_x.view(-1, d_x.size(-1))
    dx = (flat @ w_ih).view(x.shape) if ctx.needs_input_grad[0] else None
    dw_ih = flat.t() @ x.reshape(-1, x.size(-1)) if ctx.needs_input_grad[1] else None
    db = flat.sum(0) if ctx.needs_input_grad[3] else None
    return dx, dw_ih, db


class _LSTMFunction(torch.autograd.Function):
    """One LSTM layer, one direction: (x, W_x, W_h, b, h_0, c_0) -> (output, h_n, c_n)."""

    @staticmethod
    def forward(ctx, x, w_ih, w_hh, b, h0, c0):  # type: ignore[override]
        length, hidden = x.size(0), w_hh.size(1)
        # tanh(a) = 2σ(2a) − 1, and σ is several times cheaper than tanh on a CPU: double the
        # candidate's rows once, so that one σ per step covers all four gates.
        double = torch.ones(4 * hidden, dtype=x.dtype, device=x.device)
        double[2 * hidden : 3 * hidden] = 2
        a = _input_projection(x, w_ih, b).mul_(double)  # becomes the gates, in place
        w_hh_T = w_hh.t() * double
        out = x.new_empty(length, x.size(1), hidden)
        cs = x.new_empty(length + 1, x.size(1), hidden)  # c_0 .. c_L
        tanh_cs = torch.empty_like(out)
        cs[0] = c0
        # Every view the loop needs, made once: step t's slices of the buffers.
        a_t, i_t, f_t, s_t, o_t = (v.unbind(0) for v in (a, *a.chunk(4, dim=-1)))
        c_t, tanh_c, h_t = cs.unbind(0), tanh_cs.unbind(0), out.unbind(0)
        h = h0
        for t in range(length):
            a_t[t].addmm_(h, w_hh_T)  # + W_h h_{t-1}: the pre-activations of (3.1)-(3.4)
            a_t[t].sigmoid_()  # (3.1), (3.2), (3.4) i_t, f_t, o_t; s_t = σ(2 a_g) for (3.3)
            # (3.5) c_t = f ⊙ c_{t-1} + i ⊙ g with (3.3) g = 2 s − 1: f ⊙ c_{t-1} + 2 i ⊙ s − i
            c = torch.mul(f_t[t], c_t[t], out=c_t[t + 1])
            c.addcmul_(i_t[t], s_t[t], value=2).sub_(i_t[t])
            torch.tanh(c_t[t + 1], out=tanh_c[t])
            h = torch.mul(o_t[t], tanh_c[t], out=h_t[t])  # (3.6) h_t
        a[..., 2 * hidden : 3 * hidden].mul_(2).sub_(1)  # g = 2s − 1 for all steps at once
        ctx.save_for_backward(x, w_ih, w_hh, h0, a, cs, tanh_cs, out)
        return out, out[-1].clone(), cs[-1].clone()

    @staticmethod
    def backward(ctx, d_out, d_hn, d_cn):  # type: ignore[override]
        x, w_ih, w_hh, h0, gates, cs, tanh_cs, out = ctx.saved_tensors
        hidden = w_hh.size(1)
        i, f, g, o = gates.chunk(4, dim=-1)
        # The factors of (7)-(11) that do not depend on dh or dc, for all steps at once, in as
        # few passes over the (T, N, 4H) buffers as possible: they are memory-bound.
        o_dtanh_c = torch.addcmul(o, o * tanh_cs, tanh_cs, value=-1)  # (7) o ⊙ (1 − tanh²c)
        d_a = torch.addcmul(gates, gates, gates, value=-1)  # σ' = σ − σ² for i, f, o
        d_i, d_f, d_g, d_o = d_a.chunk(4, dim=-1)
        torch.mul(g, g, out=d_g).neg_().add_(1)  # tanh' = 1 − g² for g
        d_o.mul_(tanh_cs)  # (8), times dh in the loop
        d_i.mul_(g)  # (9), times dc in the loop
        d_f.mul_(cs[:-1])  # (10)
        d_g.mul_(i)  # (11)
        length, batch = x.size(0), x.size(1)
        d_a_t = d_a.unbind(0)
        d_ifg = d_a[..., : 3 * hidden].view(length, batch, 3, hidden).unbind(0)
        d_o = d_a[..., 3 * hidden :].unbind(0)
        o_dtanh_c, f_t, d_out_t = o_dtanh_c.unbind(0), f.unbind(0), d_out.unbind(0)
        dh = d_hn + d_out_t[-1]  # (15) at the last step
        dc = d_cn.clone()
        dc_3 = dc.unsqueeze(1)  # a view: (N, 1, H) against the three gates (N, 3, H)
        for t in range(length - 1, -1, -1):
            dc.addcmul_(dh, o_dtanh_c[t])  # (7)
            d_o[t].mul_(dh)  # (8)
            d_ifg[t].mul_(dc_3)  # (9), (10), (11)
            dc.mul_(f_t[t])  # (12) dc_{t-1}
            if t > 0:  # (13) and (15): dh_{t-1}
                dh = torch.addmm(d_out_t[t - 1], d_a_t[t], w_hh)
            else:
                dh = d_a_t[0] @ w_hh
        h_prev = _previous_states(h0, out)
        flat = d_a.view(-1, d_a.size(-1))
        dw_hh = flat.t() @ h_prev.view(-1, hidden) if ctx.needs_input_grad[2] else None
        dx, dw_ih, db = _weight_grads(ctx, d_a, x, w_ih)
        return dx, dw_ih, dw_hh, db, dh, dc


class _GRUFunction(torch.autograd.Function):
    """One GRU layer, one direction: (x, W_x, W_h, b_x, b_h, h_0) -> (output, h_n)."""

    @staticmethod
    def forward(ctx, x, w_ih, w_hh, b_ih, b_hh, h0):  # type: ignore[override]
        length, hidden = x.size(0), w_hh.size(1)
        xw = _input_projection(x, w_ih, b_ih)
        u = x.new_empty(length, x.size(1), 3 * hidden)  # W_h h_{t-1} + b_h of every step
        gates = torch.empty_like(u)  # r, z, n
        out = x.new_empty(length, x.size(1), hidden)
        w_hh_T = w_hh.t()
        u_t, h_t = u.unbind(0), out.unbind(0)
        x_rz, u_rz, rz = (v[..., : 2 * hidden].unbind(0) for v in (xw, u, gates))
        x_n, u_n, n = (v[..., 2 * hidden :].unbind(0) for v in (xw, u, gates))
        r, z = gates[..., :hidden].unbind(0), gates[..., hidden : 2 * hidden].unbind(0)
        h = h0
        for t in range(length):
            if b_hh is None:
                torch.mm(h, w_hh_T, out=u_t[t])
            else:
                torch.addmm(b_hh, h, w_hh_T, out=u_t[t])
            torch.add(x_rz[t], u_rz[t], out=rz[t]).sigmoid_()  # (5.1), (5.2) r_t, z_t
            torch.addcmul(x_n[t], r[t], u_n[t], out=n[t]).tanh_()  # (5.3) n_t
            h = torch.lerp(n[t], h, z[t], out=h_t[t])  # (5.4) h_t
        ctx.save_for_backward(x, w_ih, w_hh, h0, u, gates, out)
        ctx.has_bias = (b_ih is not None, b_hh is not None)
        return out, out[-1].clone()

    @staticmethod
    def backward(ctx, d_out, d_hn):  # type: ignore[override]
        x, w_ih, w_hh, h0, u, gates, out = ctx.saved_tensors
        length, batch, hidden = out.shape
        r, z, n = gates.chunk(3, dim=-1)
        h_prev = _previous_states(h0, out)
        # The factors of the gate gradients that do not depend on dh, for all steps at once.
        q_n = (1 - z) * (1 - n * n)
        q = torch.cat(
            [q_n * u[..., 2 * hidden :] * r * (1 - r), (h_prev - n) * z * (1 - z), q_n], dim=-1
        )  # r, z, n
        d_x = q.clone()  # times dh in the loop: the pre-activation gradients
        q[..., 2 * hidden :].mul_(r)  # u_n enters (5.3) multiplied by r
        d_u = q
        d_x3 = d_x.view(length, batch, 3, hidden).unbind(0)
        d_u3 = d_u.view(length, batch, 3, hidden).unbind(0)
        d_u_t, z_t, d_out_t = d_u.unbind(0), z.unbind(0), d_out.unbind(0)
        dh = d_hn + d_out_t[-1]
        for t in range(length - 1, -1, -1):
            dh_3 = dh.unsqueeze(1)
            d_x3[t].mul_(dh_3)
            d_u3[t].mul_(dh_3)
            previous = d_out_t[t - 1] if t > 0 else torch.zeros_like(dh)
            dh = torch.addmm(previous, d_u_t[t], w_hh).addcmul_(dh, z_t[t])  # dh_{t-1}
        flat_u = d_u.view(-1, 3 * hidden)
        dw_hh = flat_u.t() @ h_prev.view(-1, hidden) if ctx.needs_input_grad[2] else None
        db_hh = flat_u.sum(0) if ctx.has_bias[1] and ctx.needs_input_grad[4] else None
        dx, dw_ih, db_ih = _weight_grads(ctx, d_x, x, w_ih)
        return dx, dw_ih, dw_hh, db_ih, db_hh, dh


class _RNNFunction(torch.autograd.Function):
    """One Elman RNN layer, one direction: (x, W_x, W_h, b, h_0, relu) -> (output, h_n)."""

    @staticmethod
    def forward(ctx, x, w_ih, w_hh, b, h0, relu):  # type: ignore[override]
        out = _input_projection(x, w_ih, b)  # becomes h_t, step by step, in place
        w_hh_T = w_hh.t()
        h = h0
        for h_t in out.unbind(0):
            h = h_t.addmm_(h, w_hh_T)
            h = h.relu_() if relu else h.tanh_()  # (1.1)
        ctx.save_for_backward(x, w_ih, w_hh, h0, out)
        ctx.relu = relu
        return out, out[-1].clone()

    @staticmethod
    def backward(ctx, d_out, d_hn):  # type: ignore[override]
        x, w_ih, w_hh, h0, out = ctx.saved_tensors
        d_a = (out > 0).to(out.dtype) if ctx.relu else 1 - out * out  # times dh in the loop
        d_a_t, d_out_t = d_a.unbind(0), d_out.unbind(0)
        dh = d_hn + d_out_t[-1]
        for t in range(x.size(0) - 1, -1, -1):
            d_a_t[t].mul_(dh)
            dh = torch.addmm(d_out_t[t - 1], d_a_t[t], w_hh) if t > 0 else d_a_t[0] @ w_hh
        h_prev = _previous_states(h0, out)
        flat = d_a.view(-1, d_a.size(-1))
        dw_hh = flat.t() @ h_prev.view(-1, h0.size(-1)) if ctx.needs_input_grad[2] else None
        dx, dw_ih, db = _weight_grads(ctx, d_a, x, w_ih)
        return dx, dw_ih, dw_hh, db, dh, None


def lstm_sequence(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    h0: Tensor,
    c0: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer over a whole sequence, forward and backward by hand.

    Args:
        x: (T, N, H_in). w_ih: (4H, H_in), w_hh: (4H, H), b_ih and b_hh: (4H,) or both None;
            gate blocks i, f, g, o as in ``torch.nn.LSTM``.
        h0, c0: (N, H).

    Returns:
        output (T, N, H), h_n (N, H), c_n (N, H).
    """
    return _LSTMFunction.apply(x, w_ih, w_hh, folded_bias(b_ih, b_hh), h0, c0)


def gru_sequence(
    x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None, h0: Tensor
) -> tuple[Tensor, Tensor]:
    """One GRU layer over a whole sequence; shapes as :func:`lstm_sequence` with 3H rows
    (r, z, n). Returns output (T, N, H) and h_n (N, H)."""
    return _GRUFunction.apply(x, w_ih, w_hh, b_ih, b_hh, h0)


def rnn_sequence(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    h0: Tensor,
    relu: bool = False,
) -> tuple[Tensor, Tensor]:
    """One Elman RNN layer over a whole sequence; shapes as :func:`lstm_sequence` with H rows.
    Returns output (T, N, H) and h_n (N, H)."""
    return _RNNFunction.apply(x, w_ih, w_hh, folded_bias(b_ih, b_hh), h0, relu)


def _kind_of(layer: nn.Module) -> str:
    mode = getattr(layer, "mode", None)  # torch.nn's layers: "LSTM", "GRU", "RNN_TANH", ...
    name = mode if isinstance(mode, str) else type(layer).__name__
    kind = "RNN" if name.startswith("RNN") else name
    if kind.lower() not in GATE_BLOCKS or not hasattr(layer, "weight_hh_l0"):
        raise TypeError(
            f"fuse: expected an RNN, LSTM or GRU layer of companion.models or torch.nn, "
            f"got {type(layer).__name__}"
        )
    return kind


class FusedLayer(nn.Module):
    """A recurrent layer run by the hand-written Functions of this module.

    It holds the wrapped layer (``self.layer``) and uses its parameters, so training either
    trains both. Inputs and outputs are those of the wrapped layer: ``input`` (T, N, H_in),
    (N, T, H_in) with ``batch_first``, or unbatched (T, H_in); ``hx`` h_0 (num_layers, N, H), for
    the LSTM (h_0, c_0); returns ``(output, h_n)`` or ``(output, (h_n, c_n))``.
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.kind = _kind_of(layer)
        problems = []
        if getattr(layer, "bidirectional", False):
            problems.append("bidirectional=True")
        if getattr(layer, "proj_size", 0):
            problems.append(f"proj_size={layer.proj_size}")
        if problems:
            raise ValueError(
                f"fuse: expected a one-direction layer without projections, got "
                f"{', '.join(problems)}; use the layer itself"
            )
        self.layer = layer

    def forward(self, input: Tensor, hx: Any = None) -> tuple[Tensor, Any]:
        layer = self.layer
        if isinstance(input, PackedSequence):
            raise TypeError("FusedLayer: packed sequences are not supported; use the layer itself")
        if layer.training and layer.dropout > 0 and layer.num_layers > 1:
            raise ValueError(
                f"FusedLayer: dropout={layer.dropout} between layers is not "
                "supported while training; use the layer itself"
            )
        x, batched = time_major(
            "FusedLayer", input, layer.batch_first, layer.input_size, layer.weight_ih_l0
        )
        x = x.contiguous()
        states = self._initial(hx, x, batched)
        finals: list[list[Tensor]] = []
        for k in range(layer.num_layers):
            x, *final = self._run(k, x, [s[k] for s in states])
            finals.append(final)
        state = [torch.stack(parts) for parts in zip(*finals)]
        if not batched:
            state = [s.squeeze(1) for s in state]
        x = batch_major(x, batched, layer.batch_first)
        return x, (state[0], state[1]) if self.kind == "LSTM" else state[0]

    def _initial(self, hx: Any, x: Tensor, batched: bool) -> list[Tensor]:
        """h_0 (and c_0), checked as the twins check them, each (num_layers, N, H)."""
        layer = self.layer
        shape = (layer.num_layers, x.size(1), layer.hidden_size)
        names = ("h_0", "c_0") if self.kind == "LSTM" else ("h_0",)
        if hx is None:
            return [x.new_zeros(shape) for _ in names]
        if batched:
            expected, layout = shape, "(num_layers, N, H)"
        else:
            expected, layout = (shape[0], shape[2]), "(num_layers, H) for unbatched input"
        states = check_states("FusedLayer", hx, names, expected, layout, x)
        return [s if batched else s.unsqueeze(1) for s in states]

    def _run(self, k: int, x: Tensor, state: list[Tensor]) -> tuple[Tensor, ...]:
        layer = self.layer
        weights = [
            getattr(layer, f"{name}_l{k}", None)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        if self.kind == "LSTM":
            return lstm_sequence(x, *weights, *state)
        if self.kind == "GRU":
            return gru_sequence(x, *weights, *state)
        return rnn_sequence(x, *weights, *state, relu=layer.nonlinearity == "relu")


def fuse(layer: nn.Module) -> FusedLayer:
    """Wrap a one-direction RNN, LSTM or GRU layer (companion's or torch.nn's) in the fast path:
    the same function and gradients, computed by hand-written Functions. See the module doc."""
    return FusedLayer(layer)
