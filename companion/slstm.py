"""The sLSTM of xLSTM (Beck et al., 2024): chapter 12.

The sLSTM (Beck et al., 2024): an LSTM with an exponential input gate, a normaliser state n_t
and, to keep exp from overflowing, a stabiliser state m_t. Pre-activations ĩ_t, f̃_t, z̃_t, õ_t
are W x_t + R h_{t-1} + b, as in the LSTM.

    (12.10)  c_t = f_t ⊙ c_{t-1} + i_t ⊙ z_t,   z_t = tanh(z̃_t),  i_t = exp(ĩ_t),  f_t = σ(f̃_t)
    (12.11)  n_t = f_t ⊙ n_{t-1} + i_t                                            normaliser
    (12.12)  h_t = o_t ⊙ c_t / n_t,               o_t = σ(õ_t)
    (12.13)  m_t = max(log f_t + m_{t-1}, ĩ_t) (ĩ_t where n_{t-1} = 0),            stabiliser
             i'_t = exp(ĩ_t − m_t),  f'_t = exp(log f_t + m_{t-1} − m_t)

The stabilised form uses i'_t and f'_t in place of i_t and f_t in (12.10)-(12.11): its c_t and
n_t are the unstabilised ones times exp(−m_t), so their ratio, and h_t, are the same.

:class:`SLSTMCell` is one step; :class:`SLSTM` runs stacked cells over time, with the input and
state checks every layer of companion shares (:mod:`companion._layer`). Its parameters are the
cells', ``cells.{k}.weight_ih``, ``cells.{k}.weight_hh`` and ``cells.{k}.bias``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from companion._checks import check_bool, check_int
from companion._layer import (
    State,
    batch_major,
    cell_input,
    check_states,
    reset_uniform,
    time_major,
)

__all__ = ["slstm_step", "SLSTMCell", "SLSTM"]


def slstm_step(
    xw_t: Tensor, state: State, w_hh_T: Tensor, stabilised: bool = True
) -> tuple[State, State]:
    """One sLSTM step, equations (12.10)-(12.13).

    Args:
        xw_t: (N, 4H) the input part of the four pre-activations, ``W x_t + b``, computed
            ahead; columns i, f, z, o.
        state: ``(h_{t-1}, c_{t-1}, n_{t-1}, m_{t-1})``, each (N, H).
        w_hh_T: (H, 4H) the recurrent weights R of the four, transposed.
        stabilised: use the stabiliser m_t (12.13); without it i_t = exp(ĩ_t)
            overflows once ĩ_t passes about 88 in float32, and m_t stays as it came.

    Returns:
        ``((h_t, c_t, n_t, m_t), (i_t, f_t, z_t, o_t))``, each (N, H); i_t and f_t are the
        gates actually applied (i'_t and f'_t when stabilised).
    """
    h, c, n, m = state
    i_tilde, f_tilde, z, o = torch.addmm(xw_t, h, w_hh_T).chunk(4, dim=-1)
    log_f = F.logsigmoid(f_tilde)  # log of the sigmoid forget gate
    if stabilised:
        # (12.13). Where n_{t-1} = 0 (the first step from the zero state) nothing before counts:
        # log f_t + m_{t-1} is taken as -inf, so m_t = ĩ_t, as in xLSTM's reference code, and
        # f'_t = 0. With m_0 = 0 instead, ĩ_1 = -120 made i'_1 = exp(ĩ_1 − m_1) underflow to 0,
        # n_1 = 0 and h_1 = 0/0. From then on one of i'_t, f'_t is 1, so n_t >= 1 and
        # |h_t| <= 1: nothing is NaN for any finite input.
        log_f_m = torch.where(n == 0, float("-inf"), log_f + m)
        m_new = torch.maximum(log_f_m, i_tilde)
        i = torch.exp(i_tilde - m_new)  # never above 1
        f = torch.exp(log_f_m - m_new)
        m = m_new
    else:
        i, f = torch.exp(i_tilde), torch.exp(log_f)
    z, o = torch.tanh(z), torch.sigmoid(o)
    c = f * c + i * z  # (12.10)
    n = f * n + i  # (12.11)
    h = o * c / n  # (12.12)
    return (h, c, n, m), (i, f, z, o)


class SLSTMCell(nn.Module):
    """An sLSTM cell, equations (12.10)-(12.13), with full (not block-diagonal) recurrent
    weights.

    Args:
        input_size: H_in, the features of x_t.
        hidden_size: H, the features of h_t.
        bias: whether to have ``bias`` (4H,).
        stabilised: use the stabiliser state m_t; ``False`` gives the textbook form, which
            overflows for large input-gate pre-activations.
        device, dtype: where and in which dtype to create the parameters.

    Shapes:
        input: (N, H_in), or (H_in,) unbatched.
        state: ``(h, c, n, m)``, each (N, H) or (H,) unbatched; zeros if None.
        returns: the new ``(h, c, n, m)``.

    Parameters: ``weight_ih`` (4H, H_in), ``weight_hh`` (4H, H), ``bias`` (4H,), row blocks
    i, f, z, o. Initialised uniform in [-1/√H, 1/√H].
    """

    _state_names = ("h", "c", "n", "m")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        stabilised: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        where = type(self).__name__
        check_int(where, "input_size", input_size)
        check_int(where, "hidden_size", hidden_size)
        check_bool(where, "bias", bias)
        check_bool(where, "stabilised", stabilised)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.stabilised = stabilised
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size, **factory))
        b = nn.Parameter(torch.empty(4 * hidden_size, **factory)) if bias else None
        self.register_parameter("bias", b)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in [-1/√H, 1/√H], as the other cells."""
        reset_uniform(self, self.hidden_size)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, stabilised={self.stabilised}"

    def forward(self, input: Tensor, state: Sequence[Tensor] | None = None) -> State:
        where = type(self).__name__
        x, is_batched = cell_input(where, input, self.input_size, self.weight_ih)
        states = _initial(where, state, x, (x.size(0), self.hidden_size), is_batched)
        xw = F.linear(x, self.weight_ih, self.bias)
        states, _ = slstm_step(xw, states, self.weight_hh.t(), self.stabilised)
        return states if is_batched else tuple(s.squeeze(0) for s in states)


def _initial(
    where: str, state: Sequence[Tensor] | None, x: Tensor, shape: tuple[int, ...], is_batched: bool
) -> State:
    """The user's (h, c, n, m) of ``shape`` (batched), checked and batched; zeros if None."""
    names = SLSTMCell._state_names
    if state is None:
        return tuple(x.new_zeros(shape) for _ in names)
    expected = shape if is_batched else shape[:-2] + shape[-1:]
    layout = "(N, H)" if len(shape) == 2 else "(num_layers, N, H)"
    if not is_batched:
        layout = layout.replace("N, ", "") + " for unbatched input"
    states = check_states(where, state, names, expected, layout, x, arg="state")
    return states if is_batched else tuple(s.unsqueeze(-2) for s in states)


class SLSTM(nn.Module):
    """A stack of sLSTM layers: :class:`SLSTMCell` run over time.

    Args:
        input_size, hidden_size, bias, stabilised, device, dtype: as :class:`SLSTMCell`.
        num_layers: stacked layers; layer k > 0 reads the outputs h_t of layer k-1.
        batch_first: input and output are (N, T, ·) instead of (T, N, ·); states are not.

    Shapes:
        input: (T, N, H_in), (N, T, H_in) if batch_first, or (T, H_in) unbatched.
        state: ``(h, c, n, m)``, each (num_layers, N, H) (or (num_layers, H) unbatched);
            zeros if None.
        returns: (output, (h_n, c_n, n_n, m_n)): output (T, N, H) in the input's layout, the
            last layer's h_t; the final states, each (num_layers, N, H).

    Parameters of layer k: ``cells.{k}.weight_ih``, ``cells.{k}.weight_hh``, ``cells.{k}.bias``
    as in :class:`SLSTMCell`: 4H·(H_in + H + 1) per layer.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        stabilised: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_int("SLSTM", "num_layers", num_layers)
        check_bool("SLSTM", "batch_first", batch_first)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.batch_first = num_layers, batch_first
        self.cells = nn.ModuleList(
            SLSTMCell(
                input_size if k == 0 else hidden_size, hidden_size, bias, stabilised, device, dtype
            )
            for k in range(num_layers)
        )

    def forward(self, input: Tensor, state: Sequence[Tensor] | None = None) -> tuple[Tensor, State]:
        """Run all layers over ``input``; see the class docstring for the shapes."""
        where = type(self).__name__
        weight = self.cells[0].weight_ih
        x, is_batched = time_major(where, input, self.batch_first, self.input_size, weight)
        shape = (self.num_layers, x.size(1), self.hidden_size)
        states = _initial(where, state, x, shape, is_batched)
        finals = []
        for k, cell in enumerate(self.cells):
            xw = F.linear(x, cell.weight_ih, cell.bias)  # the input part of every step at once
            s = tuple(v[k] for v in states)
            outputs = []
            for xw_t in xw.unbind(0):
                s, _ = slstm_step(xw_t, s, cell.weight_hh.t(), cell.stabilised)
                outputs.append(s[0])
            x = torch.stack(outputs)
            finals.append(s)
        final = tuple(torch.stack(v) for v in zip(*finals))
        if not is_batched:
            final = tuple(v.squeeze(1) for v in final)
        return batch_major(x, is_batched, self.batch_first), final
