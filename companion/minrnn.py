"""minGRU and minLSTM (Feng et al., 2024), and the scans that run them in parallel over time
(Heinsen, 2023): chapter 12.

Gated recurrences today: minGRU and minLSTM (Feng et al., 2024) with a log-space parallel scan
(Heinsen, 2023), and the sLSTM cell of xLSTM (Beck et al., 2024).

    minGRU    (12.2)  z_t = σ(W_z x_t + b_z)
              (12.3)  h̃_t = g(W_h x_t + b_h)
              (12.4)  h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t
    minLSTM   (12.5)  f_t = σ(W_f x_t + b_f),  i_t = σ(W_i x_t + b_i)
              (12.6)  f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)
              (12.7)  h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ g(W_h x_t + b_h)

No gate reads h_{t-1}, so both are the linear recurrence (12.1) h_t = a_t ⊙ h_{t-1} + b_t,
which a prefix scan solves for all t at once. g(x) = x + 1/2 for x ≥ 0 and σ(x) below (12.8)
keeps every b_t, and so every h_t, positive: the scan can then work with logarithms (12.9),
where products become sums and nothing under- or overflows over thousands of steps.

The log-space scan subtracts two running sums that grow with t, log A_t and the log-sum-exp
(12.9): in float32 their rounding, about 6e-8 of |log A_t|, becomes the error of log h_t. At
T = 16384 that is 1e-3 in the outputs and more than 100% in some gate gradients. The default
parallel form is therefore a chunked scan in linear space: every chunk of C steps runs (12.1)
as a loop, all chunks at once, and the chunks' ends are joined by the same scan one level up.
It only multiplies and adds, so it is as accurate as the loop at any length, and it is faster
than the log-space scan on the CPU.

The layers share every check with the other layers of companion (:mod:`companion._layer`):
their input goes through ``time_major``, their ``h0`` through ``check_states``. Their parameters
are ``weight_l{k}`` and ``bias_l{k}``: one matrix per layer, since no gate reads h_{t-1}.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from companion._checks import check_bool, check_int
from companion._layer import ShapeError, batch_major, check_states, reset_uniform, time_major

__all__ = [
    "min_g",
    "log_min_g",
    "log_space_scan",
    "chunked_scan",
    "scan_dtype",
    "MinGRU",
    "MinLSTM",
]

_MIN_MODES = ("parallel", "sequential", "log-space")
#: Steps per chunk of :func:`chunked_scan`: the fastest of 8-128 forward and backward at batch 1
#: on the CPU, lengths 256-16384 (8 and 16 tie; 16 needs fewer levels on a GPU).
SCAN_CHUNK = 16


def min_g(x: Tensor) -> Tensor:
    """The paper's g (12.8): ``x + 1/2`` for x ≥ 0 and ``σ(x)`` below; continuous, always > 0."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_min_g(x: Tensor) -> Tensor:
    """``log g(x)``, computed without forming g(x) where that would lose precision.

    For x < 0, log σ(x) is ``F.logsigmoid``, exact to the last bit at any x (``-softplus(-x)``
    would drop log(1 + e^x) below x = -20, where softplus switches to its linear branch); the
    ``relu`` keeps the unused branch finite, so that its gradient (multiplied by zero in
    ``where``) is not NaN.
    """
    return torch.where(x >= 0, torch.log(torch.relu(x) + 0.5), F.logsigmoid(x))


def log_space_scan(log_a: Tensor, log_b: Tensor, log_h0: Tensor | None = None) -> Tensor:
    """All h_t of (12.1) h_t = a_t ⊙ h_{t-1} + b_t at once, for a_t, b_t > 0 (Heinsen, 2023).

    With A_t = a_1 ⋯ a_t, the recurrence unrolls to h_t = A_t ⊙ (h_0 + Σ_{k≤t} b_k / A_k): a
    cumulative sum of log a_t gives log A_t, and a cumulative log-sum-exp gives the sum (12.9),
    both of which PyTorch computes in O(log L) parallel depth.

    In float32 it loses accuracy with length: log h_t is the difference of two sums that grow
    like t, so it carries their rounding (about 1e-3 relative in h at T = 16384, and worse in
    the gradients). :func:`chunked_scan` has no such loss; this one is kept for chapter 12's
    comparison and for float64.

    Args:
        log_a: (T, ...) log of the decay a_t, time first.
        log_b: (T, ...) log of the input b_t, same shape.
        log_h0: (...) log of h_0 (h_0 > 0), or None for h_0 = 0.

    Returns:
        (T, ...) the states h_1 ... h_T (not their logarithms).
    """
    if log_h0 is not None:  # h_0 enters as a b_0 with a_0 = 1
        log_a = torch.cat([torch.zeros_like(log_h0).unsqueeze(0), log_a])
        log_b = torch.cat([log_h0.unsqueeze(0), log_b])
    log_a_star = torch.cumsum(log_a, dim=0)  # log A_t
    log_h = log_a_star + torch.logcumsumexp(log_b - log_a_star, dim=0)
    h = torch.exp(log_h)
    return h if log_h0 is None else h[1:]


def scan_dtype(x: Tensor) -> torch.dtype:
    """The dtype MinGRU and MinLSTM scan in for input ``x`` in ``mode="parallel"``.

    float64 for float32 input where the device has float64 (CPU, CUDA): the scan only
    multiplies and adds, so this costs little, and it keeps the digits of gates near 0 (see
    ``_MinBase._chunked``). float32 on devices without float64 (MPS) and for float16 and
    bfloat16 input; float64 input stays float64.
    """
    if x.dtype == torch.float64 or (x.dtype == torch.float32 and x.device.type != "mps"):
        return torch.float64
    return torch.float32


def chunked_scan(a: Tensor, b: Tensor, h0: Tensor | None = None, chunk: int = SCAN_CHUNK) -> Tensor:
    """All h_t of (12.1) h_t = a_t ⊙ h_{t-1} + b_t at once, as accurate as the loop in float32.

    The T steps are cut into T/C chunks of C = ``chunk`` steps. One loop of C steps runs (12.1)
    inside every chunk at once, from h = 0, and keeps the chunk's running product of a_t. The
    state at each chunk's end then comes from the same scan over the chunks (a recurrence of
    the same form, T/C long), and enters every step of the next chunk through those products.
    Depth C·log_C(L), work O(L); nothing is subtracted, so the rounding does not grow with L.
    Any signs are allowed (h_0 need not be positive).

    Args:
        a: (T, ...) the decay a_t, time first.
        b: (T, ...) the input b_t, same shape.
        h0: (...) h_0, or None for zeros.
        chunk: C, the steps per chunk (>= 2).

    Returns:
        (T, ...) the states h_1 ... h_T.
    """
    check_int("chunked_scan", "chunk", chunk, minimum=2)
    if a.shape != b.shape or a.dim() == 0 or a.size(0) == 0:
        raise ShapeError(
            f"chunked_scan: expected a and b of one shape (L, ...) with L >= 1, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    if h0 is not None:  # fold h_0 into the first input: h_1 = a_1 h_0 + b_1
        b = torch.cat([torch.addcmul(b[:1], a[:1], h0.unsqueeze(0)), b[1:]])
    length = a.size(0)
    if length <= chunk:
        h, outputs = torch.zeros_like(b[0]), []
        for a_t, b_t in zip(a.unbind(0), b.unbind(0)):
            h = torch.addcmul(b_t, a_t, h)  # (12.1)
            outputs.append(h)
        return torch.stack(outputs)
    pad = (-length) % chunk  # a = 1, b = 0 past the end leave the state as it is
    if pad:
        a = torch.cat([a, a.new_ones((pad,) + a.shape[1:])])
        b = torch.cat([b, b.new_zeros((pad,) + b.shape[1:])])
    a, b = a.unflatten(0, (-1, chunk)), b.unflatten(0, (-1, chunk))  # (T/C, C, ...)
    h, product = torch.zeros_like(b[:, 0]), torch.ones_like(a[:, 0])
    states, products = [], []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):  # step t of every chunk at once
        h = torch.addcmul(b_t, a_t, h)
        product = product * a_t
        states.append(h)
        products.append(product)
    h, product = torch.stack(states, 1), torch.stack(products, 1)
    ends = chunked_scan(product[:, -1], h[:, -1], chunk=chunk)  # true state at each chunk's end
    carry = torch.cat([torch.zeros_like(ends[:1]), ends[:-1]])  # ... entering the next chunk
    h = torch.addcmul(h, product, carry.unsqueeze(1))
    return h.flatten(0, 1)[:length]


class _MinBase(nn.Module):
    """Parameters, checks and the stacking of layers shared by :class:`MinGRU` and
    :class:`MinLSTM`; subclasses give the gate count and the two forms of one layer."""

    _gates: int  # row blocks in weight_l{k}: minGRU 2 (z, h̃), minLSTM 3 (f, i, h̃)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        mode: str = "parallel",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        where = type(self).__name__
        check_int(where, "input_size", input_size)
        check_int(where, "hidden_size", hidden_size)
        check_int(where, "num_layers", num_layers)
        check_bool(where, "bias", bias)
        check_bool(where, "batch_first", batch_first)
        if mode not in _MIN_MODES:
            raise ValueError(
                f"{where}: expected mode 'parallel', 'sequential' or 'log-space', got {mode!r}"
            )
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.mode = bias, batch_first, mode
        factory = {"device": device, "dtype": dtype}
        rows = self._gates * hidden_size
        for k in range(num_layers):
            columns = input_size if k == 0 else hidden_size
            self.register_parameter(
                f"weight_l{k}", nn.Parameter(torch.empty(rows, columns, **factory))
            )
            b = nn.Parameter(torch.empty(rows, **factory)) if bias else None
            self.register_parameter(f"bias_l{k}", b)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in [-1/√H, 1/√H], as the other layers."""
        reset_uniform(self, self.hidden_size)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        s += f", mode={self.mode!r}"
        if self.batch_first:
            s += ", batch_first=True"
        return s if self.bias else s + ", bias=False"

    def forward(self, input: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run all layers over ``input``; see the class docstring for the shapes."""
        where = type(self).__name__
        # PackedSequence is refused too: the scan needs equal lengths.
        x, is_batched = time_major(where, input, self.batch_first, self.input_size, self.weight_l0)
        states = self._initial(where, h0, x, is_batched)
        finals = []
        for k in range(self.num_layers):
            xw = F.linear(x, getattr(self, f"weight_l{k}"), getattr(self, f"bias_l{k}"))
            if self.mode == "sequential":
                x = self._sequential(xw, states[k])
            elif self.mode == "parallel":
                x = self._chunked(xw, states[k])
            else:
                log_a, log_b = self._log_coefficients(xw)
                x = log_space_scan(
                    log_a, log_b, None if states[k] is None else torch.log(states[k])
                )
            finals.append(x[-1])
        h_n = torch.stack(finals)
        return batch_major(x, is_batched, self.batch_first), h_n if is_batched else h_n.squeeze(1)

    def _initial(self, where: str, h0: Any, x: Tensor, is_batched: bool) -> list[Tensor | None]:
        """Check ``h0`` and split it by layer; None stands for zeros."""
        if h0 is None:
            return [None] * self.num_layers
        n = x.size(1)
        if is_batched:
            expected, layout = (self.num_layers, n, self.hidden_size), "(num_layers, N, H)"
        else:
            expected, layout = (self.num_layers, self.hidden_size), "(num_layers, H) unbatched"
        (h0,) = check_states(where, h0, ("h0",), expected, layout, x)
        if self.mode == "log-space" and bool((h0 <= 0).any()):
            # log h_0 must exist; g keeps every state a layer returns positive.
            raise ValueError(
                f"{where}: expected h0 > 0 everywhere in mode='log-space' (the scan takes its "
                f"logarithm), got minimum {h0.min().item():.3g}; pass None for zeros"
            )
        return list(h0 if is_batched else h0.unsqueeze(1))

    def _sequential(self, xw: Tensor, h: Tensor | None) -> Tensor:
        """One layer as a loop over time, the readable reference: (T, N, G·H) -> (T, N, H)."""
        raise NotImplementedError

    def _chunked(self, xw: Tensor, h: Tensor | None) -> Tensor:
        """One layer as a chunked scan over time: (T, N, G·H) -> (T, N, H).

        a_t and b_t are exp of their logarithms: σ(k) would carry its rounding near 1 into its
        gradient σ(k)(1 − σ(k)), 2e-4 relative at k = 8, where log σ(k) does not. They are
        formed and scanned in :func:`scan_dtype`: a float32 a_t = 1 − 3e-4 (a gate near 0)
        keeps only four digits of 1 − a_t, and that, summed over the gate's memory of
        thousands of steps, is 1e-5 in h and 3e-5 in the gradients at T = 16384.
        """
        log_a, log_b = self._log_coefficients(xw)
        dtype = scan_dtype(xw)
        log_a, log_b = log_a.to(dtype), log_b.to(dtype)
        h = chunked_scan(torch.exp(log_a), torch.exp(log_b), None if h is None else h.to(dtype))
        return h.to(xw.dtype)

    def _log_coefficients(self, xw: Tensor) -> tuple[Tensor, Tensor]:
        """log a_t and log b_t of (12.1), each (T, N, H), from xw (T, N, G·H)."""
        raise NotImplementedError


class MinGRU(_MinBase):
    """A stack of minGRU layers (Feng et al., 2024), equations (12.2)-(12.4).

    Args:
        input_size: H_in, the features of x_t.
        hidden_size: H, the features of h_t.
        num_layers: stacked layers; layer k > 0 reads the outputs h_t of layer k-1.
        bias: whether to have the ``bias_l{k}`` parameters.
        batch_first: input and output are (N, T, ·) instead of (T, N, ·); h0 and h_n are not.
        mode: ``"parallel"``, a chunked scan over time (:func:`chunked_scan`), as accurate
            as the loop at any length; ``"sequential"``, a loop over time; or
            ``"log-space"``, the log-space scan (:func:`log_space_scan`) of the paper, kept
            for comparison: in float32 it loses accuracy with length (about 1e-3 in h and
            far more in the gradients at T = 16384). All three compute the same function.
        device, dtype: where and in which dtype to create the parameters.

    Shapes:
        input: (T, N, H_in), (N, T, H_in) if batch_first, or (T, H_in) unbatched.
        h0: (num_layers, N, H), or (num_layers, H) unbatched; zeros if None. In log-space
            mode every entry must be > 0 (its logarithm is taken); a returned h_n always is.
        returns: (output, h_n): output (T, N, H) in the input's layout, the last layer's h_t;
            h_n (num_layers, N, H), the final h of every layer.

    Parameters of layer k: ``weight_l{k}`` (2H, H_in) for k = 0 else (2H, H), rows [W_z; W_h],
    and ``bias_l{k}`` (2H,): 2H·(H_in + 1) per layer, about a third of a GRU's.
    """

    _gates = 2

    def _sequential(self, xw: Tensor, h: Tensor | None) -> Tensor:
        k_z, k_h = xw.chunk(2, dim=-1)
        z = torch.sigmoid(k_z)  # (12.2) update gate, from x_t alone
        h_tilde = min_g(k_h)  # (12.3) candidate, positive
        h = xw.new_zeros(xw.shape[1:-1] + (self.hidden_size,)) if h is None else h
        outputs = []
        for z_t, h_tilde_t in zip(z.unbind(0), h_tilde.unbind(0)):
            h = (1 - z_t) * h + z_t * h_tilde_t  # (12.4)
            outputs.append(h)
        return torch.stack(outputs)

    def _log_coefficients(self, xw: Tensor) -> tuple[Tensor, Tensor]:
        k_z, k_h = xw.chunk(2, dim=-1)
        log_a = F.logsigmoid(-k_z)  # log(1 − z_t) = log σ(−k)
        log_b = F.logsigmoid(k_z) + log_min_g(k_h)  # log z_t + log h̃_t
        return log_a, log_b


class MinLSTM(_MinBase):
    """A stack of minLSTM layers (Feng et al., 2024), equations (12.5)-(12.7).

    Args, shapes and modes as :class:`MinGRU`.

    Parameters of layer k: ``weight_l{k}`` (3H, H_in) for k = 0 else (3H, H), rows
    [W_f; W_i; W_h], and ``bias_l{k}`` (3H,): 3H·(H_in + 1) per layer.
    """

    _gates = 3

    def _sequential(self, xw: Tensor, h: Tensor | None) -> Tensor:
        k_f, k_i, k_h = xw.chunk(3, dim=-1)
        f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)  # (12.5) gates from x_t alone
        f, i = f / (f + i), i / (f + i)  # (12.6) normalised: f' + i' = 1
        h_tilde = min_g(k_h)
        h = xw.new_zeros(xw.shape[1:-1] + (self.hidden_size,)) if h is None else h
        outputs = []
        for f_t, i_t, h_tilde_t in zip(f.unbind(0), i.unbind(0), h_tilde.unbind(0)):
            h = f_t * h + i_t * h_tilde_t  # (12.7)
            outputs.append(h)
        return torch.stack(outputs)

    def _log_coefficients(self, xw: Tensor) -> tuple[Tensor, Tensor]:
        k_f, k_i, k_h = xw.chunk(3, dim=-1)
        # log f' = log f − log(f + i) = log σ(log f − log i): no f + i is formed
        diff = F.logsigmoid(k_i) - F.logsigmoid(k_f)  # log i − log f
        return F.logsigmoid(-diff), F.logsigmoid(diff) + log_min_g(k_h)  # log f', log i' + log h̃
