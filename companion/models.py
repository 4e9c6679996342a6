r"""RNN, LSTM and GRU cells and layers written from their equations, twins of ``torch.nn``'s.

Every gate is one line of code next to the number of the equation it implements. The classes
have the same constructor arguments, parameter names and shapes, initialisation, forward
signature and return values as ``torch.nn.RNN``/``LSTM``/``GRU`` and
``torch.nn.RNNCell``/``LSTMCell``/``GRUCell``: weights move both ways with ``load_state_dict``,
and a model can swap one for the other.

Equations
---------
Input ``x_t`` (N, H_in), hidden state ``h_t`` (N, H), cell state ``c_t`` (N, H); ``σ`` is the
logistic sigmoid, ``⊙`` the element-wise product. ``W_x*`` act on the input and ``W_h*`` on the
previous hidden state; ``b_x*`` and ``b_h*`` are their biases (one would do; PyTorch keeps two
for cuDNN, and so do we, so that the weights are interchangeable).

Elman RNN (``nonlinearity="relu"`` puts max(0, ·) in place of tanh)::

    (1.1)  h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h)
    (1.3)  the same with PyTorch's two biases, b_xh + b_hh = b_h:
           h_t = tanh(W_xh x_t + b_xh + W_hh h_{t-1} + b_hh)

LSTM (the book's one bias per gate is the sum of the two, b_i = b_xi + b_hi)::

    (3.1)  i_t = σ(W_xi x_t + b_xi + W_hi h_{t-1} + b_hi)        input gate
    (3.2)  f_t = σ(W_xf x_t + b_xf + W_hf h_{t-1} + b_hf)        forget gate
    (3.3)  g_t = tanh(W_xg x_t + b_xg + W_hg h_{t-1} + b_hg)     candidate cell
    (3.4)  o_t = σ(W_xo x_t + b_xo + W_ho h_{t-1} + b_ho)        output gate
    (3.5)  c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t                      cell state
    (3.6)  h_t = o_t ⊙ tanh(c_t)                                 hidden state

GRU, in PyTorch's form (the reset gate multiplies ``W_hn h_{t-1} + b_hn``, after the matmul)::

    (5.1)  r_t = σ(W_xr x_t + b_xr + W_hr h_{t-1} + b_hr)               reset gate
    (5.2)  z_t = σ(W_xz x_t + b_xz + W_hz h_{t-1} + b_hz)               update gate
    (5.3)  n_t = tanh(W_xn x_t + b_xn + r_t ⊙ (W_hn h_{t-1} + b_hn))    candidate state
    (5.4)  h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}                         hidden state

Storage, as in PyTorch: the gates' matrices are stacked by rows, ``weight_ih`` =
[W_xi; W_xf; W_xg; W_xo] (4H, H_in), ``weight_hh`` = [W_hi; ...] (4H, H), ``bias_ih`` and
``bias_hh`` (4H,); the GRU stacks r, z, n (3H rows), the RNN has H rows. Layers call them
``weight_ih_l{k}`` etc. for layer k, with ``_reverse`` appended for the backward direction.
Everything starts uniform in [-1/√H, 1/√H].

Shapes
------
Layers take ``input`` (T, N, H_in), (N, T, H_in) with ``batch_first=True``, unbatched (T, H_in),
or a ``PackedSequence``, and return ``output`` (T, N, D·H) in the input's layout (D = 2 if
bidirectional else 1) and ``h_n`` (num_layers·D, N, H), for the LSTM ``(h_n, c_n)``. Cells take
``input`` (N, H_in) or (H_in,) and return h' (and c') of shape (N, H) or (H,). Missing initial
states are zeros made with ``input.new_zeros``: on the input's device, in its dtype.

Speed
-----
The layers are plain Python loops over time, yet they stay within a small factor of PyTorch's
fused kernels on a CPU because they

1. compute the input part of every gate for all T steps in one matmul before the loop,
2. compute the recurrent part of all gates in one matmul per step and split it with ``chunk``,
3. walk the steps with ``xw.unbind(0)`` (indexing ``xw[t]`` in the loop made the backward pass
   2-3x slower: each slice's backward writes a full-size buffer), and
4. stack the outputs once, at the end.

Gate recording
--------------
:mod:`companion.gate_recording` records, by the names in :mod:`companion.gates`:

>>> model = LSTM(3, 8)
>>> with record_gates(model) as rec:
...     output, (h_n, c_n) = model(torch.randn(5, 2, 3))
>>> rec[""]["f"].shape  # (num_layers·D, T, N, H)
torch.Size([1, 5, 2, 8])
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from companion._autocast import autocast_on, autocast_states
from companion._checks import check_bool, check_int
from companion._layer import (
    ShapeError,
    batch_major,
    cell_input,
    check_input,
    check_states,
    reset_uniform,
    time_major,
)
from companion.gate_recording import GateRecord, GateRecorder, record_gates
from companion.gates import GATE_BLOCKS, GATE_NAMES, SIGMOID_GATES, STATE_NAMES, TANH_GATES
from companion.parameters import count_parameters, expected_parameters

__all__ = [
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "RNN",
    "LSTM",
    "GRU",
    "rnn_step",
    "lstm_step",
    "gru_step",
    "ShapeError",
    "folded_bias",
    # The gate tables, gate recording and parameter counts live in companion.gates,
    # companion.gate_recording and companion.parameters; re-exported here, where the chapters
    # have always found them.
    "GATE_NAMES",
    "GATE_BLOCKS",
    "STATE_NAMES",
    "SIGMOID_GATES",
    "TANH_GATES",
    "GateRecord",
    "record_gates",
    "count_parameters",
    "expected_parameters",
    # Chapter 12's layers live in companion.minrnn and companion.slstm; re-exported here, where
    # the chapters have always found them.
    "min_g",
    "log_min_g",
    "log_space_scan",
    "chunked_scan",
    "scan_dtype",
    "MinGRU",
    "MinLSTM",
    "slstm_step",
    "SLSTMCell",
    "SLSTM",
]

#: A recurrent state: ``(h,)``, or ``(h, c)`` for the LSTM; each (N, H).
State = tuple[Tensor, ...]

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"tanh": torch.tanh, "relu": torch.relu}


# ------------------------------------------------------------------------------------------------
# One time step: the equations. Cells call these once per call, layers once per step.
# ------------------------------------------------------------------------------------------------


def rnn_step(
    xw_t: Tensor,
    state: State,
    w_hh_T: Tensor,
    activation: Callable[[Tensor], Tensor] = torch.tanh,
) -> tuple[State, State]:
    """One Elman RNN step, equation (1.1) in the two-bias form (1.3).

    Args:
        xw_t: (N, H) the input part ``W_xh x_t + b_xh + b_hh``, computed ahead.
        state: ``(h_{t-1},)``, (N, H).
        w_hh_T: (H, H) the recurrent weights transposed, ``W_hh^T``.
        activation: ``torch.tanh`` or ``torch.relu``.

    Returns:
        ``((h_t,), ())``: the new state and the (here empty) tuple of gates.
    """
    (h,) = state
    h = activation(torch.addmm(xw_t, h, w_hh_T))  # (1.1) hidden state
    return (h,), ()


def lstm_step(xw_t: Tensor, state: State, w_hh_T: Tensor) -> tuple[State, State]:
    """One LSTM step, equations (3.1)-(3.6).

    Args:
        xw_t: (N, 4H) the input part of the four gates, ``W_x x_t + b_x + b_h``, computed ahead;
            columns in PyTorch's order i, f, g, o.
        state: ``(h_{t-1}, c_{t-1})``, each (N, H).
        w_hh_T: (H, 4H) the recurrent weights of the four gates, transposed.

    Returns:
        ``((h_t, c_t), (i_t, f_t, g_t, o_t))``, each (N, H).
    """
    h, c = state
    # The recurrent part of all four gates in one matmul, added to the input part.
    i, f, g, o = torch.addmm(xw_t, h, w_hh_T).chunk(4, dim=-1)
    i = torch.sigmoid(i)  # (3.1) input gate
    f = torch.sigmoid(f)  # (3.2) forget gate
    g = torch.tanh(g)  # (3.3) candidate cell
    o = torch.sigmoid(o)  # (3.4) output gate
    c = f * c + i * g  # (3.5) cell state
    h = o * torch.tanh(c)  # (3.6) hidden state
    return (h, c), (i, f, g, o)


def gru_step(
    xw_t: Tensor, state: State, w_hh_T: Tensor, b_hh: Tensor | None
) -> tuple[State, State]:
    """One GRU step, equations (5.1)-(5.4).

    Args:
        xw_t: (N, 3H) the input part of the three gates, ``W_x x_t + b_x``, computed ahead;
            columns r, z, n.
        state: ``(h_{t-1},)``, (N, H).
        w_hh_T: (H, 3H) the recurrent weights of the three gates, transposed.
        b_hh: (3H,) the recurrent biases, or None. Unlike the LSTM's they cannot be folded into
            ``xw_t``, because ``b_hn`` sits inside ``r ⊙ (...)`` in (5.3).

    Returns:
        ``((h_t,), (r_t, z_t, n_t))``, each (N, H).
    """
    (h,) = state
    # The recurrent part of all three gates in one matmul.
    hw = torch.mm(h, w_hh_T) if b_hh is None else torch.addmm(b_hh, h, w_hh_T)
    x_r, x_z, x_n = xw_t.chunk(3, dim=-1)
    h_r, h_z, h_n = hw.chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)  # (5.1) reset gate
    z = torch.sigmoid(x_z + h_z)  # (5.2) update gate
    n = torch.tanh(x_n + r * h_n)  # (5.3) candidate state
    h = torch.lerp(n, h, z)  # (5.4) (1 − z) ⊙ n + z ⊙ h_{t-1}: from n towards h_{t-1} by z
    return (h,), (r, z, n)


def _scan(
    step: Callable[..., tuple[State, State]],
    xw: Tensor,
    state: State,
    params: tuple[Any, ...],
    reverse: bool = False,
    masks: Sequence[Tensor] | None = None,
    record: list[State] | None = None,
) -> tuple[Tensor, State]:
    """Run ``step`` along the time axis of ``xw``: one layer in one direction.

    Args:
        step: :func:`rnn_step`, :func:`lstm_step` or :func:`gru_step`.
        xw: (T, N, G·H) the input part of the gates at every step.
        state: the initial state, a tuple of (N, H) tensors, h first.
        params: the step's remaining arguments (the recurrent weights).
        reverse: go from t = L-1 down to 0 (the backward direction of a bidirectional layer).
        masks: for packed input, L bool tensors (N, 1), True where step t lies inside sequence n.
            Elsewhere the state is carried over unchanged, so that every sequence ends in the
            state of its own last step, in either direction.
        record: when recording gates, an empty list that receives the detached gates and state
            of every step, in time order.

    Returns:
        The outputs h_t of all steps in time order (T, N, H), and the final state.
    """
    xw_steps = xw.unbind(0)  # all L views at once, see "Speed" in the module docstring
    times = range(len(xw_steps) - 1, -1, -1) if reverse else range(len(xw_steps))
    outputs = []
    for t in times:
        new_state, gates = step(xw_steps[t], state, *params)
        if masks is not None:
            new_state = tuple(torch.where(masks[t], new, old) for new, old in zip(new_state, state))
        state = new_state
        outputs.append(state[0])
        if record is not None:
            record.append(tuple(v.detach() for v in gates + state))
    if reverse:  # back to time order
        outputs.reverse()
        if record is not None:
            record.reverse()
    return torch.stack(outputs), state


def folded_bias(b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor | None:
    """``b_ih + b_hh``, for models where the two only ever appear summed: one add per call
    instead of one per step."""
    return None if b_ih is None or b_hh is None else b_ih + b_hh


# ------------------------------------------------------------------------------------------------
# Checks shared by cells and layers. The messages name what was expected and what came.
# ------------------------------------------------------------------------------------------------


def _check_no_projection(where: str, proj_size: Any) -> None:
    """RNN and GRU take ``proj_size`` only to refuse it as torch.nn does, with a ValueError."""
    if proj_size != 0:
        raise ValueError(
            f"{where}: expected proj_size=0 (projections exist only for the LSTM), "
            f"got proj_size={proj_size!r}"
        )


def _check_dropout(where: str, dropout: Any, num_layers: int) -> None:
    """torch.nn's own rule and error for ``dropout`` (a ValueError for a non-number too, not
    check_real's TypeError), and its warning where one layer makes dropout do nothing."""
    is_number = isinstance(dropout, numbers.Real) and not isinstance(dropout, bool)
    if not is_number or not 0 <= dropout <= 1:
        raise ValueError(
            f"{where}: expected dropout to be a probability in [0, 1], got {dropout!r}"
        )
    if dropout > 0 and num_layers == 1:
        warnings.warn(
            f"{where}: dropout acts between stacked layers, so dropout={dropout} with "
            f"num_layers=1 does nothing",
            stacklevel=4,  # the user's call of RNN/LSTM/GRU(...)
        )


def _check_nonlinearity(where: str, nonlinearity: Any) -> None:
    if nonlinearity not in _ACTIVATIONS:
        raise ValueError(f"{where}: expected nonlinearity 'tanh' or 'relu', got {nonlinearity!r}")


# ------------------------------------------------------------------------------------------------
# Cells: one step per call; the caller loops over time.
# ------------------------------------------------------------------------------------------------


class _Recurrent(nn.Module, GateRecorder):
    """What cells and layers share: the step and its arguments, initialisation, gate records.

    A subclass names its step function (``_step``) and whether ``b_hh`` folds into the input
    part (``_fold_bias``; the GRU's cannot, because ``b_hn`` sits inside ``r ⊙ (...)``).
    """

    _step: Callable[..., tuple[State, State]]
    _fold_bias: bool = True
    _gates_per_unit: int  # gate blocks in weight_ih: RNN 1, LSTM 4, GRU 3
    _gate_names: tuple[str, ...]
    _state_names: tuple[str, ...] = ("h",)
    #: Whether CPU autocast runs the model in its lower dtype, as it does the torch.nn twin
    #: (RNN, LSTM, RNNCell); GRU, GRUCell and LSTMCell stay in float32 there, as torch's do.
    _cpu_autocast_lowers: bool = True
    hidden_size: int

    def _float32_scope(self, input: Any) -> AbstractContextManager | None:
        """Autocast switched off, where torch.nn's twin ignores it; None where nothing changes.
        (On CUDA autocast lowers all six, as it does torch's.)"""
        data = input.data if isinstance(input, PackedSequence) else input
        # Lower-precision input is run in the autocast dtype by torch.nn's twins too.
        if self._cpu_autocast_lowers or not isinstance(data, Tensor) or data.dtype != torch.float32:
            return None
        if data.device.type != "cpu" or not autocast_on("cpu"):
            return None
        return torch.autocast("cpu", enabled=False)

    def reset_parameters(self) -> None:
        """Uniform in [-1/√H, 1/√H], in registration order, as torch.nn does (same seed, same
        weights)."""
        reset_uniform(self, self.hidden_size)

    def _input_part(
        self, x: Tensor, w_ih: Tensor, b_ih: Tensor | None, b_hh: Tensor | None
    ) -> Tensor:
        """``W_x x + b_x`` (plus ``b_h`` where it folds) for every row of ``x`` at once."""
        return F.linear(x, w_ih, folded_bias(b_ih, b_hh) if self._fold_bias else b_ih)

    def _step_args(self, w_hh: Tensor, b_hh: Tensor | None) -> tuple[Any, ...]:
        """The step's arguments after ``xw_t`` and the state."""
        return (w_hh.t(),) if self._fold_bias else (w_hh.t(), b_hh)


class _ElmanStep:
    """The nonlinearity that RNNCell and RNN pass to :func:`rnn_step`."""

    nonlinearity: str

    def _step_args(self, w_hh: Tensor, b_hh: Tensor | None) -> tuple[Any, ...]:
        return (w_hh.t(), _ACTIVATIONS[self.nonlinearity])


class _CellBase(_Recurrent):
    """Parameters, checks and gate recording shared by the three cells."""

    _record_time_dim = 0  # records are (steps, N, H)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        where = type(self).__name__
        self.input_size = check_int(where, "input_size", input_size)
        # torch.nn's cells accept hidden_size=0 and return (N, 0) states; so do these.
        self.hidden_size = hidden_size = check_int(where, "hidden_size", hidden_size, minimum=0)
        self.bias = bias = check_bool(where, "bias", bias)
        rows = self._gates_per_unit * hidden_size
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(rows, **factory))
            self.bias_hh = nn.Parameter(torch.empty(rows, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        # A list while record_gates is active, which every call appends its gates to.
        self._recording: list[dict[str, Tensor]] | None = None
        self.reset_parameters()

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _prepare(self, input: Tensor, hx: Any) -> tuple[Tensor, State, bool]:
        """Check ``input`` (N, H_in) or (H_in,) and ``hx``; return both batched, and whether
        ``input`` was."""
        where = type(self).__name__
        x, is_batched = cell_input(where, input, self.input_size, self.weight_ih)
        if hx is None:
            zeros = tuple(x.new_zeros(x.size(0), self.hidden_size) for _ in self._state_names)
            return x, autocast_states(x, zeros), is_batched
        if is_batched:
            expected, layout = (x.size(0), self.hidden_size), "(N, H)"
        else:
            expected, layout = (self.hidden_size,), "(H,) for unbatched input"
        states = check_states(where, hx, self._state_names, expected, layout, x)
        states = states if is_batched else tuple(s.unsqueeze(0) for s in states)
        return x, autocast_states(x, states), is_batched

    def _cell_step(self, input: Tensor, hx: Any) -> State:
        """One step of the cell's equations: the new state, unbatched if ``input`` was."""
        float32 = self._float32_scope(input)
        if float32 is not None:
            with float32:
                return self._cell_step(input, hx)
        x, state, is_batched = self._prepare(input, hx)
        xw = self._input_part(x, self.weight_ih, self.bias_ih, self.bias_hh)
        state, gates = self._step(xw, state, *self._step_args(self.weight_hh, self.bias_hh))
        if self._recording is not None:  # one (1, N, H) entry per gate and state
            names = self._gate_names + self._state_names
            values = gates + state
            self._recording.append({n: v.detach().unsqueeze(0) for n, v in zip(names, values)})
        return state if is_batched else tuple(s.squeeze(0) for s in state)


class RNNCell(_ElmanStep, _CellBase):
    """An Elman RNN cell, equation (1.1); a twin of ``torch.nn.RNNCell``.

    Args:
        input_size: H_in, the features of x_t.
        hidden_size: H, the features of h_t.
        bias: whether to have ``bias_ih`` and ``bias_hh``.
        nonlinearity: ``"tanh"`` or ``"relu"``.
        device, dtype: where and in which dtype to create the parameters.

    Shapes:
        input: (N, H_in), or (H_in,) unbatched.
        hx: h (N, H), or (H,) unbatched; zeros if None.
        returns: h' (N, H), or (H,) unbatched.

    Parameters: ``weight_ih`` (H, H_in), ``weight_hh`` (H, H), ``bias_ih`` and ``bias_hh`` (H,).
    """

    _step = staticmethod(rnn_step)
    _gates_per_unit = GATE_BLOCKS["rnn"]
    _gate_names = GATE_NAMES["rnn"]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        _check_nonlinearity(type(self).__name__, nonlinearity)
        super().__init__(input_size, hidden_size, bias, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._cell_step(input, hx)[0]


class LSTMCell(_CellBase):
    """An LSTM cell, equations (3.1)-(3.6); a twin of ``torch.nn.LSTMCell``.

    Args:
        input_size: H_in, the features of x_t.
        hidden_size: H, the features of h_t and c_t.
        bias: whether to have ``bias_ih`` and ``bias_hh``.
        device, dtype: where and in which dtype to create the parameters.

    Shapes:
        input: (N, H_in), or (H_in,) unbatched.
        hx: a tuple (h, c), each (N, H), or (H,) unbatched; zeros if None.
        returns: (h', c'), each (N, H), or (H,) unbatched.

    Parameters: ``weight_ih`` (4H, H_in), ``weight_hh`` (4H, H), ``bias_ih`` and ``bias_hh``
    (4H,), gate blocks in the order i, f, g, o.
    """

    _step = staticmethod(lstm_step)
    _cpu_autocast_lowers = False
    _gates_per_unit = GATE_BLOCKS["lstm"]
    _gate_names = GATE_NAMES["lstm"]
    _state_names = STATE_NAMES["lstm"]

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        h, c = self._cell_step(input, hx)
        return h, c


class GRUCell(_CellBase):
    """A GRU cell, equations (5.1)-(5.4); a twin of ``torch.nn.GRUCell``.

    Args:
        input_size: H_in, the features of x_t.
        hidden_size: H, the features of h_t.
        bias: whether to have ``bias_ih`` and ``bias_hh``.
        device, dtype: where and in which dtype to create the parameters.

    Shapes:
        input: (N, H_in), or (H_in,) unbatched.
        hx: h (N, H), or (H,) unbatched; zeros if None.
        returns: h' (N, H), or (H,) unbatched.

    Parameters: ``weight_ih`` (3H, H_in), ``weight_hh`` (3H, H), ``bias_ih`` and ``bias_hh``
    (3H,), gate blocks in the order r, z, n.
    """

    _step = staticmethod(gru_step)
    _fold_bias = False
    _cpu_autocast_lowers = False
    _gates_per_unit = GATE_BLOCKS["gru"]
    _gate_names = GATE_NAMES["gru"]

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._cell_step(input, hx)[0]


# ------------------------------------------------------------------------------------------------
# Layers: whole sequences, stacked layers, both directions.
# ------------------------------------------------------------------------------------------------


class _LayerBase(_Recurrent):
    """Parameters, checks, the loops over layers and directions, and gate recording."""

    _record_time_dim = 1  # records are (num_layers·D, T, N, H)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        where = type(self).__name__
        input_size = check_int(where, "input_size", input_size)
        hidden_size = check_int(where, "hidden_size", hidden_size)
        num_layers = check_int(where, "num_layers", num_layers)
        bias = check_bool(where, "bias", bias)
        batch_first = check_bool(where, "batch_first", batch_first)
        bidirectional = check_bool(where, "bidirectional", bidirectional, int_ok=True)
        _check_dropout(where, dropout, num_layers)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = 0  # torch.nn's layers all have it; only its LSTM can use it
        self._register_weights({"device": device, "dtype": dtype})
        # A list while record_gates is active, which every call appends its gates to.
        self._recording: list[dict[str, Tensor]] | None = None
        self.reset_parameters()

    def _register_weights(self, factory: dict[str, Any]) -> None:
        """Create every layer's and direction's weights (uninitialised), named as torch.nn
        names them: ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``,
        with ``_reverse`` for the backward direction; registered in torch.nn's order."""
        rows, hidden_size = self._gates_per_unit * self.hidden_size, self.hidden_size
        # Parameter names per layer and direction, in torch.nn's order. torch.nn calls this list
        # _all_weights too, and code in the wild loops over it, e.g. to set the forget-gate bias.
        self._all_weights: list[list[str]] = []
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                layer_input_size = (
                    self.input_size if layer == 0 else self.num_directions * hidden_size
                )
                shapes = {"weight_ih": (rows, layer_input_size), "weight_hh": (rows, hidden_size)}
                if self.bias:
                    shapes.update(bias_ih=(rows,), bias_hh=(rows,))
                for kind, shape in shapes.items():
                    parameter = nn.Parameter(torch.empty(shape, **factory))
                    self.register_parameter(kind + suffix, parameter)
                self._all_weights.append([kind + suffix for kind in shapes])

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def all_weights(self) -> list[list[Tensor]]:
        """The parameters per layer and direction, like torch.nn's ``all_weights``."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """Does nothing; here because code written for torch.nn's cuDNN layers calls it."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    def forward(
        self, input: Tensor | PackedSequence, hx: Tensor | tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor | PackedSequence, Tensor | tuple[Tensor, Tensor]]:
        """Run all layers over ``input``; the class docstring gives the shapes."""
        float32 = self._float32_scope(input)
        if float32 is not None:
            with float32:
                return self.forward(input, hx)
        where = type(self).__name__
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        if not isinstance(input, Tensor):
            raise TypeError(
                f"{where}: expected input to be a Tensor or a PackedSequence, "
                f"got {type(input).__name__}"
            )
        x, is_batched = time_major(
            where, input, self.batch_first, self.input_size, self.weight_ih_l0
        )
        output, state = self._run_layers(x, self._initial_state(hx, x, is_batched), masks=None)
        if not is_batched:
            state = tuple(s.squeeze(1) for s in state)
        return batch_major(output, is_batched, self.batch_first), self._as_hx(state)

    def _forward_packed(
        self, packed: PackedSequence, hx: Any
    ) -> tuple[PackedSequence, Tensor | tuple[Tensor, Tensor]]:
        """Run over the padded batch; steps past a sequence's end leave its state unchanged."""
        where = type(self).__name__
        layouts = {2: "(sum of lengths, H_in) in its data"}
        check_input(where, packed.data, layouts, self.input_size, self.weight_ih_l0)
        x, lengths = pad_packed_sequence(packed)  # (T, N, H_in), in the caller's batch order
        steps = torch.arange(x.size(0), device=x.device)
        masks = (steps[:, None] < lengths.to(x.device)[None, :]).unsqueeze(-1).unbind(0)
        output, state = self._run_layers(x, self._initial_state(hx, x, True), masks)
        return _pack_like(output, lengths, packed), self._as_hx(state)

    def _initial_state(self, hx: Any, x: Tensor, is_batched: bool) -> State:
        """The initial states for time-major ``x`` (T, N, H_in), each (num_layers·D, N, H);
        zeros if ``hx`` is None."""
        shape = (self.num_layers * self.num_directions, x.size(1), self.hidden_size)
        if hx is None:
            return autocast_states(x, tuple(x.new_zeros(shape) for _ in self._state_names))
        if is_batched:
            expected, layout = shape, "(num_layers * num_directions, N, H)"
        else:
            expected = (shape[0], shape[2])
            layout = "(num_layers * num_directions, H) for unbatched input"
        names = tuple(f"{name}_0" for name in self._state_names)
        states = check_states(type(self).__name__, hx, names, expected, layout, x)
        states = states if is_batched else tuple(s.unsqueeze(1) for s in states)
        return autocast_states(x, states)

    def _as_hx(self, state: State) -> Tensor | tuple[Tensor, Tensor]:
        """The final state as torch.nn returns it: h_n, or (h_n, c_n) for the LSTM."""
        return state[0] if len(state) == 1 else (state[0], state[1])

    def _run_layers(
        self, x: Tensor, state: State, masks: Sequence[Tensor] | None
    ) -> tuple[Tensor, State]:
        """All layers and directions over time-major ``x`` (T, N, H_in), from ``state`` (a tuple
        of (num_layers·D, N, H)). Returns the last layer's outputs (T, N, D·H) and final state."""
        recording = self._recording is not None
        # One state tuple per layer and direction.
        initial = list(zip(*(s.unbind(0) for s in state)))
        finals: list[State] = []
        records: list[list[State]] = []
        layer_input = x
        for layer in range(self.num_layers):
            if layer > 0 and self.training and self.dropout > 0:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
            outputs = []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                w_ih, w_hh, *biases = (getattr(self, name) for name in self._all_weights[k])
                b_ih, b_hh = biases if biases else (None, None)
                record: list[State] | None = [] if recording else None
                output, final = self._direction(
                    layer_input, initial[k], w_ih, w_hh, b_ih, b_hh, direction == 1, masks, record
                )
                outputs.append(output)
                finals.append(final)
                if record is not None:
                    records.append(record)
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
        if self._recording is not None:
            self._recording.append(self._stack_records(records))
        return layer_input, tuple(torch.stack(s) for s in zip(*finals))

    def _direction(
        self,
        x: Tensor,
        state: State,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor | None,
        b_hh: Tensor | None,
        *scan_options: Any,
    ) -> tuple[Tensor, State]:
        """One layer in one direction over ``x`` (T, N, H_in): outputs (T, N, H) and final state.

        ``scan_options`` (reverse, masks, record) go on to :func:`_scan`.
        """
        xw = self._input_part(x, w_ih, b_ih, b_hh)  # (T, N, G·H): every step's input part at once
        return _scan(self._step, xw, state, self._step_args(w_hh, b_hh), *scan_options)

    def _stack_records(self, records: list[list[State]]) -> dict[str, Tensor]:
        """Per layer and direction, per step, a tuple of gates -> name: (num_layers·D, T, N, H)."""
        names = self._gate_names + self._state_names
        return {
            name: torch.stack([torch.stack([step[j] for step in steps]) for steps in records])
            for j, name in enumerate(names)
        }


def _pack_like(padded: Tensor, lengths: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack ``padded`` (T, N, *) (caller's batch order) with exactly the layout of ``like``, so
    that the output's rows line up with the input's (sorting anew could order ties differently)."""
    if like.sorted_indices is not None:
        padded = padded.index_select(1, like.sorted_indices)
        lengths = lengths[like.sorted_indices.cpu()]
    data = pack_padded_sequence(padded, lengths, enforce_sorted=True).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


class RNN(_ElmanStep, _LayerBase):
    """A multi-layer Elman RNN, equation (1.1); a twin of ``torch.nn.RNN``.

    Args:
        input_size: H_in, the features of x_t.
        hidden_size: H, the features of h_t.
        num_layers: stacked layers; layer k > 0 reads the outputs of layer k-1.
        nonlinearity: ``"tanh"`` or ``"relu"``.
        bias: whether to have the ``bias_ih_l{k}`` and ``bias_hh_l{k}`` parameters.
        batch_first: input and output are (N, T, ·) instead of (T, N, ·); the states are not.
        dropout: probability of dropout on the outputs of every layer but the last, in training.
        bidirectional: add a second direction that runs from the end of the sequence to its start.
        device, dtype: where and in which dtype to create the parameters.

    Shapes:
        D: 2 if bidirectional else 1 (the number of directions).
        input: (T, N, H_in), (N, T, H_in) if batch_first, (T, H_in) unbatched, or PackedSequence.
        hx: h_0 (num_layers·D, N, H), or (num_layers·D, H) unbatched; zeros if None.
        returns: (output, h_n). output (T, N, D·H) in the input's layout (or a PackedSequence):
            the last layer's h_t at every step, both directions side by side. h_n
            (num_layers·D, N, H): the final h of every layer and direction.

    Parameters of layer k (``_reverse`` appended for the backward direction): ``weight_ih_l{k}``
    (H, H_in) for k = 0 else (H, D·H), ``weight_hh_l{k}`` (H, H), ``bias_ih_l{k}`` and
    ``bias_hh_l{k}`` (H,).
    """

    _step = staticmethod(rnn_step)
    _gates_per_unit = GATE_BLOCKS["rnn"]
    _gate_names = GATE_NAMES["rnn"]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        proj_size: int = 0,
    ) -> None:
        _check_nonlinearity(type(self).__name__, nonlinearity)
        _check_no_projection(type(self).__name__, proj_size)
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device,
            dtype,
        )
        self.nonlinearity = nonlinearity


class LSTM(_LayerBase):
    """A multi-layer LSTM, equations (3.1)-(3.6); a twin of ``torch.nn.LSTM``.

    Args:
        input_size: H_in, the features of x_t.
        hidden_size: H, the features of h_t and c_t.
        num_layers: stacked layers; layer k > 0 reads the outputs of layer k-1.
        bias: whether to have the ``bias_ih_l{k}`` and ``bias_hh_l{k}`` parameters.
        batch_first: input and output are (N, T, ·) instead of (T, N, ·); the states are not.
        dropout: probability of dropout on the outputs of every layer but the last, in training.
        bidirectional: add a second direction that runs from the end of the sequence to its start.
        proj_size: must be 0; projections are not implemented (use ``torch.nn.LSTM``).
        device, dtype: where and in which dtype to create the parameters.

    Shapes:
        D: 2 if bidirectional else 1 (the number of directions).
        input: (T, N, H_in), (N, T, H_in) if batch_first, (T, H_in) unbatched, or PackedSequence.
        hx: a tuple (h_0, c_0), each (num_layers·D, N, H), or (num_layers·D, H) unbatched;
            zeros if None.
        returns: (output, (h_n, c_n)). output (T, N, D·H) in the input's layout (or a
            PackedSequence): the last layer's h_t at every step, both directions side by side.
            h_n and c_n (num_layers·D, N, H): the final h and c of every layer and direction.

    Parameters of layer k (``_reverse`` appended for the backward direction): ``weight_ih_l{k}``
    (4H, H_in) for k = 0 else (4H, D·H), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}`` and
    ``bias_hh_l{k}`` (4H,), gate blocks in the order i, f, g, o.
    """

    _step = staticmethod(lstm_step)
    _gates_per_unit = GATE_BLOCKS["lstm"]
    _gate_names = GATE_NAMES["lstm"]
    _state_names = STATE_NAMES["lstm"]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if proj_size != 0:
            raise NotImplementedError(
                f"LSTM: expected proj_size=0 (projections are not implemented here; "
                f"torch.nn.LSTM has them), got proj_size={proj_size!r}"
            )
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device,
            dtype,
        )


class GRU(_LayerBase):
    """A multi-layer GRU, equations (5.1)-(5.4); a twin of ``torch.nn.GRU``.

    Args:
        input_size: H_in, the features of x_t.
        hidden_size: H, the features of h_t.
        num_layers: stacked layers; layer k > 0 reads the outputs of layer k-1.
        bias: whether to have the ``bias_ih_l{k}`` and ``bias_hh_l{k}`` parameters.
        batch_first: input and output are (N, T, ·) instead of (T, N, ·); the states are not.
        dropout: probability of dropout on the outputs of every layer but the last, in training.
        bidirectional: add a second direction that runs from the end of the sequence to its start.
        device, dtype: where and in which dtype to create the parameters.

    Shapes:
        D: 2 if bidirectional else 1 (the number of directions).
        input: (T, N, H_in), (N, T, H_in) if batch_first, (T, H_in) unbatched, or PackedSequence.
        hx: h_0 (num_layers·D, N, H), or (num_layers·D, H) unbatched; zeros if None.
        returns: (output, h_n). output (T, N, D·H) in the input's layout (or a PackedSequence):
            the last layer's h_t at every step, both directions side by side. h_n
            (num_layers·D, N, H): the final h of every layer and direction.

    Parameters of layer k (``_reverse`` appended for the backward direction): ``weight_ih_l{k}``
    (3H, H_in) for k = 0 else (3H, D·H), ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}`` and
    ``bias_hh_l{k}`` (3H,), gate blocks in the order r, z, n.
    """

    _step = staticmethod(gru_step)
    _fold_bias = False
    _cpu_autocast_lowers = False
    _gates_per_unit = GATE_BLOCKS["gru"]
    _gate_names = GATE_NAMES["gru"]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        proj_size: int = 0,
    ) -> None:
        _check_no_projection(type(self).__name__, proj_size)
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device,
            dtype,
        )


# Chapter 12's layers, at the end because their modules share companion._layer with this one and
# import nothing from it: no cycle.
from companion.minrnn import (  # noqa: E402
    MinGRU,
    MinLSTM,
    chunked_scan,
    log_min_g,
    log_space_scan,
    min_g,
    scan_dtype,
)
from companion.slstm import SLSTM, SLSTMCell, slstm_step  # noqa: E402
