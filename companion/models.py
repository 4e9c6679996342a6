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
Layers take ``input`` (L, N, H_in), (N, L, H_in) with ``batch_first=True``, unbatched (L, H_in),
or a ``PackedSequence``, and return ``output`` (L, N, D·H) in the input's layout (D = 2 if
bidirectional else 1) and ``h_n`` (num_layers·D, N, H), for the LSTM ``(h_n, c_n)``. Cells take
``input`` (N, H_in) or (H_in,) and return h' (and c') of shape (N, H) or (H,). Missing initial
states are zeros made with ``input.new_zeros``: on the input's device, in its dtype.

Speed
-----
The layers are plain Python loops over time, yet they stay within a small factor of PyTorch's
fused kernels on a CPU because they

1. compute the input part of every gate for all L steps in one matmul before the loop,
2. compute the recurrent part of all gates in one matmul per step and split it with ``chunk``,
3. walk the steps with ``xw.unbind(0)`` (indexing ``xw[t]`` in the loop made the backward pass
   2-3x slower: each slice's backward writes a full-size buffer), and
4. stack the outputs once, at the end.

Gate recording
--------------
>>> model = LSTM(3, 8)
>>> with record_gates(model) as rec:
...     output, (h_n, c_n) = model(torch.randn(5, 2, 3))
>>> rec[""]["f"].shape  # (num_layers·D, L, N, H)
torch.Size([1, 5, 2, 8])
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from companion._checks import check_int

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
    "GateRecord",
    "GATE_NAMES",
    "STATE_NAMES",
    "SIGMOID_GATES",
    "TANH_GATES",
    "ShapeError",
    "record_gates",
    "count_parameters",
    "expected_parameters",
]

#: What :func:`record_gates` yields: qualified module name -> gate name -> detached tensor.
GateRecord = dict[str, dict[str, Tensor]]

#: A recurrent state: ``(h,)``, or ``(h, c)`` for the LSTM; each (N, H).
State = tuple[Tensor, ...]

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"tanh": torch.tanh, "relu": torch.relu}

#: The gates each architecture records, in the order of its weight blocks (PyTorch's order).
#: diagnostics, plots and the benchmarks read gate names from here.
GATE_NAMES: dict[str, tuple[str, ...]] = {
    "rnn": (),
    "lstm": ("i", "f", "g", "o"),
    "gru": ("r", "z", "n"),
}
#: The states each architecture records after its gates: h, and c for the LSTM.
STATE_NAMES: dict[str, tuple[str, ...]] = {"rnn": ("h",), "lstm": ("h", "c"), "gru": ("h",)}
#: Gates squashed by σ into (0, 1): LSTM input, forget, output; GRU reset and update.
SIGMOID_GATES = frozenset({"i", "f", "o", "r", "z"})
#: Gates squashed by tanh into (-1, 1): the LSTM candidate g and the GRU candidate n.
TANH_GATES = frozenset({"g", "n"})


class ShapeError(ValueError, RuntimeError):
    """A tensor of the wrong shape: the wrong rank, feature size, batch size, number of layers
    in ``hx``, or an empty sequence.

    It is both a ``ValueError`` (what a bad argument is in Python) and a ``RuntimeError`` (what
    ``torch.nn`` raises for the same mistakes), so code written for either catches it.
    """


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
        xw: (L, N, G·H) the input part of the gates at every step.
        state: the initial state, a tuple of (N, H) tensors, h first.
        params: the step's remaining arguments (the recurrent weights).
        reverse: go from t = L-1 down to 0 (the backward direction of a bidirectional layer).
        masks: for packed input, L bool tensors (N, 1), True where step t lies inside sequence n.
            Elsewhere the state is carried over unchanged, so that every sequence ends in the
            state of its own last step, in either direction.
        record: when recording gates, an empty list that receives the detached gates and state
            of every step, in time order.

    Returns:
        The outputs h_t of all steps in time order (L, N, H), and the final state.
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


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device type without autocast, such as "meta"
        return False
    except TypeError:  # torch < 2.4: one query per device type
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return device_type == "cuda" and torch.is_autocast_enabled()


def _autocast_states(x: Tensor, states: State) -> State:
    """Under autocast, the states in its dtype, as torch.nn's fused kernels cast them: the
    recurrence then runs, and returns, in bfloat16 (or float16) like theirs."""
    if not _autocast_on(x.device.type):
        return states
    try:
        dtype = torch.get_autocast_dtype(x.device.type)
    except AttributeError:  # torch < 2.4
        dtype = torch.get_autocast_cpu_dtype() if x.device.type == "cpu" else torch.float16
    return tuple(s.to(dtype) for s in states)


def _folded_bias(b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor | None:
    """``b_ih + b_hh``, for models where the two only ever appear summed: one add per call
    instead of one per step."""
    return None if b_ih is None or b_hh is None else b_ih + b_hh


# ------------------------------------------------------------------------------------------------
# Checks shared by cells and layers. The messages name what was expected and what came.
# ------------------------------------------------------------------------------------------------


def _check_bool(owner: str, name: str, value: Any, int_ok: bool = False) -> bool:
    """``value`` as a bool; with ``int_ok`` the ints 0 and 1 count as False and True, as
    torch.nn's layers allow for ``bidirectional`` (not for ``bias`` or ``batch_first``)."""
    if isinstance(value, bool):
        return value
    if int_ok and isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{owner}: expected {name} to be a bool, got {type(value).__name__} {value!r}")


def _check_no_projection(owner: str, proj_size: Any) -> None:
    """RNN and GRU take ``proj_size`` only to refuse it as torch.nn does, with a ValueError."""
    if proj_size != 0:
        raise ValueError(
            f"{owner}: expected proj_size=0 (projections exist only for the LSTM), "
            f"got proj_size={proj_size!r}"
        )


def _check_nonlinearity(owner: str, nonlinearity: Any) -> None:
    if nonlinearity not in _ACTIVATIONS:
        raise ValueError(f"{owner}: expected nonlinearity 'tanh' or 'relu', got {nonlinearity!r}")


def _check_input(
    owner: str, x: Tensor, layouts: dict[int, str], input_size: int, weight: Tensor
) -> None:
    """Rank (one of ``layouts``: rank -> layout), dtype, device and feature size of an input."""
    if x.dim() not in layouts:
        (rank, layout), *others = layouts.items()
        wanted = " or ".join([f"{rank} dimensions {layout}"] + [f"{r} {lay}" for r, lay in others])
        raise ShapeError(f"{owner}: expected input with {wanted}, got shape {tuple(x.shape)}")
    _check_like(owner, "input", x, weight, "the weights'", model_can_move=True)
    if x.size(-1) != input_size:
        raise ShapeError(
            f"{owner}: expected input with input_size={input_size} features in its last "
            f"dimension, got shape {tuple(x.shape)}"
        )


def _time_major(
    owner: str, input: Any, batch_first: bool, input_size: int, weight: Tensor
) -> tuple[Tensor, bool]:
    """Check a layer's input and return it time-major, (L, N, H_in), and whether it was batched.

    The one path every layer's input goes through: a tensor, rank 3 ((L, N, H_in), or
    (N, L, H_in) if ``batch_first``) or 2 (unbatched (L, H_in)), floating point, on the weights'
    device and dtype, ``input_size`` features and at least one step.
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"{owner}: expected input to be a Tensor, got {type(input).__name__}")
    layout = "(N, L, H_in)" if batch_first else "(L, N, H_in)"
    _check_input(owner, input, {3: layout, 2: "(L, H_in)"}, input_size, weight)
    is_batched = input.dim() == 3
    if not is_batched:
        x = input.unsqueeze(1)
    else:
        x = input.transpose(0, 1) if batch_first else input
    if x.size(0) == 0:
        raise ShapeError(
            f"{owner}: expected a sequence length of at least 1, got shape {tuple(input.shape)}"
        )
    return x, is_batched


def _check_like(
    owner: str, what: str, x: Tensor, reference: Tensor, whose: str, model_can_move: bool = False
) -> None:
    """``x`` must be floating point, and on ``reference``'s device and in its dtype (any floating
    dtype under autocast, which casts them, as torch.nn allows).

    ``model_can_move`` says whether the reference is the model's weights, so that converting the
    model instead is a fix worth suggesting (it is not when the reference is the input)."""
    if not x.is_floating_point():
        raise TypeError(
            f"{owner}: expected {what} to be a floating-point tensor, got dtype {x.dtype}"
        )
    if x.device != reference.device:
        raise RuntimeError(
            f"{owner}: expected {what} on {whose} device {reference.device}, got {what} on "
            f"{x.device}; move one of them with .to(...)"
        )
    if x.dtype != reference.dtype and not _autocast_on(x.device.type):
        fix = f"convert it with .to({reference.dtype})"
        if model_can_move:
            fix += f" or the model with .to({x.dtype})"
        raise ValueError(
            f"{owner}: expected {what} in {whose} dtype {reference.dtype}, got {x.dtype}; {fix}"
        )


def _states_from_hx(
    owner: str,
    hx: Any,
    names: tuple[str, ...],
    expected: tuple[int, ...],
    layout: str,
    input: Tensor,
) -> State:
    """Check the user's ``hx`` (a tensor, or for the LSTM a pair) and return it as a tuple."""
    if len(names) == 2:
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            got = type(hx).__name__
            if isinstance(hx, (tuple, list)):
                got += f" of length {len(hx)}"
            raise TypeError(f"{owner}: expected hx to be a tuple ({', '.join(names)}), got {got}")
        states = tuple(hx)
    else:
        states = (hx,)
    for name, s in zip(names, states):
        if not isinstance(s, Tensor):
            raise TypeError(f"{owner}: expected {name} to be a Tensor, got {type(s).__name__}")
        if tuple(s.shape) != expected:
            raise ShapeError(
                f"{owner}: expected {name} of shape {expected} {layout}, got shape {tuple(s.shape)}"
            )
        _check_like(owner, name, s, input, "the input's")
    return states


# ------------------------------------------------------------------------------------------------
# Cells: one step per call; the caller loops over time.
# ------------------------------------------------------------------------------------------------


class _Recurrent(nn.Module):
    """What cells and layers share: the step and its arguments, initialisation, gate records.

    A subclass names its step function (``_step``) and whether ``b_hh`` folds into the input
    part (``_fold_bias``; the GRU's cannot, because ``b_hn`` sits inside ``r ⊙ (...)``).
    """

    _step: Callable[..., tuple[State, State]]
    _fold_bias: bool = True
    _gates_per_unit: int  # gate blocks in weight_ih: RNN 1, LSTM 4, GRU 3
    _gate_names: tuple[str, ...]
    _state_names: tuple[str, ...] = ("h",)
    _record_time_dim: int  # the axis of a gate record along which calls are joined
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
        if data.device.type != "cpu" or not _autocast_on("cpu"):
            return None
        return torch.autocast("cpu", enabled=False)

    def reset_parameters(self) -> None:
        """Uniform in [-1/√H, 1/√H], in registration order, as torch.nn does (same seed, same
        weights)."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def _input_part(
        self, x: Tensor, w_ih: Tensor, b_ih: Tensor | None, b_hh: Tensor | None
    ) -> Tensor:
        """``W_x x + b_x`` (plus ``b_h`` where it folds) for every row of ``x`` at once."""
        return F.linear(x, w_ih, _folded_bias(b_ih, b_hh) if self._fold_bias else b_ih)

    def _step_args(self, w_hh: Tensor, b_hh: Tensor | None) -> tuple[Any, ...]:
        """The step's arguments after ``xw_t`` and the state."""
        return (w_hh.t(),) if self._fold_bias else (w_hh.t(), b_hh)

    def _combine_records(self, calls: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """Join the calls' records along the time axis."""
        if not calls:
            return {}
        batch_dim = self._record_time_dim + 1
        sizes = sorted({call["h"].size(batch_dim) for call in calls})
        if len(sizes) > 1:
            raise ValueError(
                f"record_gates: expected every call of a {type(self).__name__} inside one block to "
                f"have the same batch size, got batch sizes {sizes}"
            )
        joined = {}
        for name in calls[0]:
            joined[name] = torch.cat([call[name] for call in calls], dim=self._record_time_dim)
        return joined


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
        owner = type(self).__name__
        self.input_size = check_int(owner, "input_size", input_size)
        # torch.nn's cells accept hidden_size=0 and return (N, 0) states; so do these.
        self.hidden_size = hidden_size = check_int(owner, "hidden_size", hidden_size, minimum=0)
        self.bias = bias = _check_bool(owner, "bias", bias)
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
        owner = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{owner}: expected input to be a Tensor, got {type(input).__name__}")
        _check_input(owner, input, {2: "(N, H_in)", 1: "(H_in,)"}, self.input_size, self.weight_ih)
        is_batched = input.dim() == 2
        x = input if is_batched else input.unsqueeze(0)
        if hx is None:
            zeros = tuple(x.new_zeros(x.size(0), self.hidden_size) for _ in self._state_names)
            return x, _autocast_states(x, zeros), is_batched
        if is_batched:
            expected, layout = (x.size(0), self.hidden_size), "(N, H)"
        else:
            expected, layout = (self.hidden_size,), "(H,) for unbatched input"
        states = _states_from_hx(owner, hx, self._state_names, expected, layout, x)
        states = states if is_batched else tuple(s.unsqueeze(0) for s in states)
        return x, _autocast_states(x, states), is_batched

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
    _gates_per_unit = 1
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
    _gates_per_unit = 4
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
    _gates_per_unit = 3
    _gate_names = GATE_NAMES["gru"]

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._cell_step(input, hx)[0]


# ------------------------------------------------------------------------------------------------
# Layers: whole sequences, stacked layers, both directions.
# ------------------------------------------------------------------------------------------------


class _LayerBase(_Recurrent):
    """Parameters, checks, the loops over layers and directions, and gate recording."""

    _record_time_dim = 1  # records are (num_layers·D, L, N, H)

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
        owner = type(self).__name__
        input_size = check_int(owner, "input_size", input_size)
        hidden_size = check_int(owner, "hidden_size", hidden_size)
        num_layers = check_int(owner, "num_layers", num_layers)
        bias = _check_bool(owner, "bias", bias)
        batch_first = _check_bool(owner, "batch_first", batch_first)
        bidirectional = _check_bool(owner, "bidirectional", bidirectional, int_ok=True)
        is_number = isinstance(dropout, numbers.Real) and not isinstance(dropout, bool)
        if not is_number or not 0 <= dropout <= 1:
            raise ValueError(
                f"{owner}: expected dropout to be a probability in [0, 1], got {dropout!r}"
            )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"{owner}: dropout acts between stacked layers, so dropout={dropout} with "
                f"num_layers=1 does nothing",
                stacklevel=3,
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = 0  # torch.nn's layers all have it; only its LSTM can use it
        rows = self._gates_per_unit * hidden_size
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        # Parameter names per layer and direction, in torch.nn's order. torch.nn calls this list
        # _all_weights too, and code in the wild loops over it, e.g. to set the forget-gate bias.
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            for direction in range(self.num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                layer_input_size = input_size if layer == 0 else self.num_directions * hidden_size
                shapes = {"weight_ih": (rows, layer_input_size), "weight_hh": (rows, hidden_size)}
                if bias:
                    shapes.update(bias_ih=(rows,), bias_hh=(rows,))
                for kind, shape in shapes.items():
                    parameter = nn.Parameter(torch.empty(shape, **factory))
                    self.register_parameter(kind + suffix, parameter)
                self._all_weights.append([kind + suffix for kind in shapes])
        # A list while record_gates is active, which every call appends its gates to.
        self._recording: list[dict[str, Tensor]] | None = None
        self.reset_parameters()

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
        owner = type(self).__name__
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        if not isinstance(input, Tensor):
            raise TypeError(
                f"{owner}: expected input to be a Tensor or a PackedSequence, "
                f"got {type(input).__name__}"
            )
        x, is_batched = _time_major(
            owner, input, self.batch_first, self.input_size, self.weight_ih_l0
        )
        output, state = self._run_layers(x, self._initial_state(hx, x, is_batched), masks=None)
        if not is_batched:
            output, state = output.squeeze(1), tuple(s.squeeze(1) for s in state)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, self._as_hx(state)

    def _forward_packed(
        self, packed: PackedSequence, hx: Any
    ) -> tuple[PackedSequence, Tensor | tuple[Tensor, Tensor]]:
        """Run over the padded batch; steps past a sequence's end leave its state unchanged."""
        owner = type(self).__name__
        layouts = {2: "(sum of lengths, H_in) in its data"}
        _check_input(owner, packed.data, layouts, self.input_size, self.weight_ih_l0)
        x, lengths = pad_packed_sequence(packed)  # (L, N, H_in), in the caller's batch order
        steps = torch.arange(x.size(0), device=x.device)
        masks = (steps[:, None] < lengths.to(x.device)[None, :]).unsqueeze(-1).unbind(0)
        output, state = self._run_layers(x, self._initial_state(hx, x, True), masks)
        return _pack_like(output, lengths, packed), self._as_hx(state)

    def _initial_state(self, hx: Any, x: Tensor, is_batched: bool) -> State:
        """The initial states for time-major ``x`` (L, N, H_in), each (num_layers·D, N, H);
        zeros if ``hx`` is None."""
        shape = (self.num_layers * self.num_directions, x.size(1), self.hidden_size)
        if hx is None:
            return _autocast_states(x, tuple(x.new_zeros(shape) for _ in self._state_names))
        if is_batched:
            expected, layout = shape, "(num_layers * num_directions, N, H)"
        else:
            expected = (shape[0], shape[2])
            layout = "(num_layers * num_directions, H) for unbatched input"
        names = tuple(f"{name}_0" for name in self._state_names)
        states = _states_from_hx(type(self).__name__, hx, names, expected, layout, x)
        states = states if is_batched else tuple(s.unsqueeze(1) for s in states)
        return _autocast_states(x, states)

    def _as_hx(self, state: State) -> Tensor | tuple[Tensor, Tensor]:
        """The final state as torch.nn returns it: h_n, or (h_n, c_n) for the LSTM."""
        return state[0] if len(state) == 1 else (state[0], state[1])

    def _run_layers(
        self, x: Tensor, state: State, masks: Sequence[Tensor] | None
    ) -> tuple[Tensor, State]:
        """All layers and directions over time-major ``x`` (L, N, H_in), from ``state`` (a tuple
        of (num_layers·D, N, H)). Returns the last layer's outputs (L, N, D·H) and final state."""
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
        """One layer in one direction over ``x`` (L, N, H_in): outputs (L, N, H) and final state.

        ``scan_options`` (reverse, masks, record) go on to :func:`_scan`.
        """
        xw = self._input_part(x, w_ih, b_ih, b_hh)  # (L, N, G·H): every step's input part at once
        return _scan(self._step, xw, state, self._step_args(w_hh, b_hh), *scan_options)

    def _stack_records(self, records: list[list[State]]) -> dict[str, Tensor]:
        """Per layer and direction, per step, a tuple of gates -> name: (num_layers·D, L, N, H)."""
        names = self._gate_names + self._state_names
        return {
            name: torch.stack([torch.stack([step[j] for step in steps]) for steps in records])
            for j, name in enumerate(names)
        }


def _pack_like(padded: Tensor, lengths: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack ``padded`` (L, N, *) (caller's batch order) with exactly the layout of ``like``, so
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
        batch_first: input and output are (N, L, ·) instead of (L, N, ·); the states are not.
        dropout: probability of dropout on the outputs of every layer but the last, in training.
        bidirectional: add a second direction that runs from the end of the sequence to its start.
        device, dtype: where and in which dtype to create the parameters.

    Shapes:
        D: 2 if bidirectional else 1 (the number of directions).
        input: (L, N, H_in), (N, L, H_in) if batch_first, (L, H_in) unbatched, or PackedSequence.
        hx: h_0 (num_layers·D, N, H), or (num_layers·D, H) unbatched; zeros if None.
        returns: (output, h_n). output (L, N, D·H) in the input's layout (or a PackedSequence):
            the last layer's h_t at every step, both directions side by side. h_n
            (num_layers·D, N, H): the final h of every layer and direction.

    Parameters of layer k (``_reverse`` appended for the backward direction): ``weight_ih_l{k}``
    (H, H_in) for k = 0 else (H, D·H), ``weight_hh_l{k}`` (H, H), ``bias_ih_l{k}`` and
    ``bias_hh_l{k}`` (H,).
    """

    _step = staticmethod(rnn_step)
    _gates_per_unit = 1
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
        batch_first: input and output are (N, L, ·) instead of (L, N, ·); the states are not.
        dropout: probability of dropout on the outputs of every layer but the last, in training.
        bidirectional: add a second direction that runs from the end of the sequence to its start.
        proj_size: must be 0; projections are not implemented (use ``torch.nn.LSTM``).
        device, dtype: where and in which dtype to create the parameters.

    Shapes:
        D: 2 if bidirectional else 1 (the number of directions).
        input: (L, N, H_in), (N, L, H_in) if batch_first, (L, H_in) unbatched, or PackedSequence.
        hx: a tuple (h_0, c_0), each (num_layers·D, N, H), or (num_layers·D, H) unbatched;
            zeros if None.
        returns: (output, (h_n, c_n)). output (L, N, D·H) in the input's layout (or a
            PackedSequence): the last layer's h_t at every step, both directions side by side.
            h_n and c_n (num_layers·D, N, H): the final h and c of every layer and direction.

    Parameters of layer k (``_reverse`` appended for the backward direction): ``weight_ih_l{k}``
    (4H, H_in) for k = 0 else (4H, D·H), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}`` and
    ``bias_hh_l{k}`` (4H,), gate blocks in the order i, f, g, o.
    """

    _step = staticmethod(lstm_step)
    _gates_per_unit = 4
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
        batch_first: input and output are (N, L, ·) instead of (L, N, ·); the states are not.
        dropout: probability of dropout on the outputs of every layer but the last, in training.
        bidirectional: add a second direction that runs from the end of the sequence to its start.
        device, dtype: where and in which dtype to create the parameters.

    Shapes:
        D: 2 if bidirectional else 1 (the number of directions).
        input: (L, N, H_in), (N, L, H_in) if batch_first, (L, H_in) unbatched, or PackedSequence.
        hx: h_0 (num_layers·D, N, H), or (num_layers·D, H) unbatched; zeros if None.
        returns: (output, h_n). output (L, N, D·H) in the input's layout (or a PackedSequence):
            the last layer's h_t at every step, both directions side by side. h_n
            (num_layers·D, N, H): the final h of every layer and direction.

    Parameters of layer k (``_reverse`` appended for the backward direction): ``weight_ih_l{k}``
    (3H, H_in) for k = 0 else (3H, D·H), ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}`` and
    ``bias_hh_l{k}`` (3H,), gate blocks in the order r, z, n.
    """

    _step = staticmethod(gru_step)
    _fold_bias = False
    _cpu_autocast_lowers = False
    _gates_per_unit = 3
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


# ------------------------------------------------------------------------------------------------
# Looking inside: gate recording and parameter counts.
# ------------------------------------------------------------------------------------------------


@contextmanager
def record_gates(module: nn.Module) -> Iterator[GateRecord]:
    """Record the gates of every companion cell and layer inside ``module`` within the block.

    >>> model = nn.Sequential(LSTMCell(3, 4))
    >>> with record_gates(model) as rec:
    ...     h, c = model[0](torch.randn(2, 3))
    ...     h, c = model[0](torch.randn(2, 3), (h, c))
    >>> rec["0"]["i"].shape  # (steps, N, H)
    torch.Size([2, 2, 4])

    The record is filled in when the block exits. It maps the qualified name of every companion
    module (``""`` for ``module`` itself, as in ``named_modules()``) to a dict from gate name to
    a detached tensor: LSTM ``i, f, g, o, h, c``; GRU ``r, z, n, h``; RNN ``h``. Shapes:

    - layers: (num_layers·D, L, N, H), time-major even when ``batch_first=True``; N = 1 for
      unbatched input; several calls are joined along L. For packed input L is the longest
      length, and entries past a sequence's end are meaningless.
    - cells: (steps, N, H), one step per call.

    Modules that were not called map to ``{}``. Nothing is recorded outside the block, and the
    normal path pays one ``is None`` check per call and per step.

    Raises:
        ValueError: if ``module`` holds no companion cell or layer (torch.nn's cannot be
            recorded), or if one was called with different batch sizes within the block.
        RuntimeError: if a module inside is already being recorded.
    """
    targets = [
        (name, m) for name, m in module.named_modules() if isinstance(m, (_CellBase, _LayerBase))
    ]
    if not targets:
        raise ValueError(
            f"record_gates: expected a module containing companion RNN/LSTM/GRU cells or layers, "
            f"got {type(module).__name__} with none (torch.nn's own layers cannot be recorded)"
        )
    for name, m in targets:
        if m._recording is not None:
            raise RuntimeError(
                f"record_gates: module {name!r} ({type(m).__name__}) is already being recorded"
            )
    for _, m in targets:
        m._recording = []
    record: GateRecord = {}
    try:
        yield record
    finally:
        calls = []
        for _, m in targets:  # stop recording everywhere first, even if combining fails below
            calls.append(m._recording or [])
            m._recording = None
        for (name, m), module_calls in zip(targets, calls):
            record[name] = m._combine_records(module_calls)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """The number of scalars in ``module``'s parameters (a shared parameter counts once).

    Args:
        module: any ``nn.Module``.
        trainable_only: count only the parameters with ``requires_grad=True``.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def expected_parameters(
    kind: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    bias: bool = True,
) -> int:
    """The parameter count of an ``kind`` layer ("rnn", "lstm" or "gru"), in closed form.

    Every layer and direction has G gate blocks, each with H·(H_in + H) weights and, with bias,
    2·H biases, where G = 1 (RNN), 4 (LSTM) or 3 (GRU), H_in = input_size for layer 0 and
    D·H above it (D = 2 if bidirectional else 1).
    """
    gates = {"rnn": 1, "lstm": 4, "gru": 3}
    if not isinstance(kind, str) or kind.lower() not in gates:
        raise ValueError(f"expected_parameters: expected kind 'rnn', 'lstm' or 'gru', got {kind!r}")
    g = gates[kind.lower()]
    directions = 2 if bidirectional else 1
    total = 0
    for layer in range(num_layers):
        layer_input_size = input_size if layer == 0 else directions * hidden_size
        per_direction = g * hidden_size * (layer_input_size + hidden_size)
        if bias:
            per_direction += 2 * g * hidden_size
        total += directions * per_direction
    return total


# ------------------------------------------------------------------------------------------------
# Gated recurrences today: minGRU and minLSTM (Feng et al., 2024) with a log-space parallel scan
# (Heinsen, 2023), and the sLSTM cell of xLSTM (Beck et al., 2024).
#
#     minGRU    (12.2)  z_t = σ(W_z x_t + b_z)
#               (12.3)  h̃_t = g(W_h x_t + b_h)
#               (12.4)  h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t
#     minLSTM   (12.5)  f_t = σ(W_f x_t + b_f),  i_t = σ(W_i x_t + b_i)
#               (12.6)  f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)
#               (12.7)  h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ g(W_h x_t + b_h)
#
# No gate reads h_{t-1}, so both are the linear recurrence (12.1) h_t = a_t ⊙ h_{t-1} + b_t,
# which a prefix scan solves for all t at once. g(x) = x + 1/2 for x ≥ 0 and σ(x) below (12.8)
# keeps every b_t, and so every h_t, positive: the scan can then work with logarithms (12.9),
# where products become sums and nothing under- or overflows over thousands of steps.
#
# The log-space scan subtracts two running sums that grow with t, log A_t and the log-sum-exp
# (12.9): in float32 their rounding, about 6e-8 of |log A_t|, becomes the error of log h_t. At
# L = 16384 that is 1e-3 in the outputs and more than 100% in some gate gradients. The default
# parallel form is therefore a chunked scan in linear space: every chunk of C steps runs (12.1)
# as a loop, all chunks at once, and the chunks' ends are joined by the same scan one level up.
# It only multiplies and adds, so it is as accurate as the loop at any length, and it is faster
# than the log-space scan on the CPU.
# ------------------------------------------------------------------------------------------------

__all__ += [
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
    like t, so it carries their rounding (about 1e-3 relative in h at L = 16384, and worse in
    the gradients). :func:`chunked_scan` has no such loss; this one is kept for chapter 12's
    comparison and for float64.

    Args:
        log_a: (L, ...) log of the decay a_t, time first.
        log_b: (L, ...) log of the input b_t, same shape.
        log_h0: (...) log of h_0 (h_0 > 0), or None for h_0 = 0.

    Returns:
        (L, ...) the states h_1 ... h_L (not their logarithms).
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

    The L steps are cut into L/C chunks of C = ``chunk`` steps. One loop of C steps runs (12.1)
    inside every chunk at once, from h = 0, and keeps the chunk's running product of a_t. The
    state at each chunk's end then comes from the same scan over the chunks (a recurrence of
    the same form, L/C long), and enters every step of the next chunk through those products.
    Depth C·log_C(L), work O(L); nothing is subtracted, so the rounding does not grow with L.
    Any signs are allowed (h_0 need not be positive).

    Args:
        a: (L, ...) the decay a_t, time first.
        b: (L, ...) the input b_t, same shape.
        h0: (...) h_0, or None for zeros.
        chunk: C, the steps per chunk (>= 2).

    Returns:
        (L, ...) the states h_1 ... h_L.
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
    a, b = a.unflatten(0, (-1, chunk)), b.unflatten(0, (-1, chunk))  # (L/C, C, ...)
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
        owner = type(self).__name__
        check_int(owner, "input_size", input_size)
        check_int(owner, "hidden_size", hidden_size)
        check_int(owner, "num_layers", num_layers)
        _check_bool(owner, "bias", bias)
        _check_bool(owner, "batch_first", batch_first)
        if mode not in _MIN_MODES:
            raise ValueError(
                f"{owner}: expected mode 'parallel', 'sequential' or 'log-space', got {mode!r}"
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
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        s += f", mode={self.mode!r}"
        if self.batch_first:
            s += ", batch_first=True"
        return s if self.bias else s + ", bias=False"

    def forward(self, input: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run all layers over ``input``; see the class docstring for the shapes."""
        owner = type(self).__name__
        # PackedSequence is refused too: the scan needs equal lengths.
        x, is_batched = _time_major(owner, input, self.batch_first, self.input_size, self.weight_l0)
        states = self._initial(owner, h0, x, is_batched)
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
        if not is_batched:
            return x.squeeze(1), h_n.squeeze(1)
        return (x.transpose(0, 1) if self.batch_first else x), h_n

    def _initial(self, owner: str, h0: Any, x: Tensor, is_batched: bool) -> list[Tensor | None]:
        """Check ``h0`` and split it by layer; None stands for zeros."""
        if h0 is None:
            return [None] * self.num_layers
        n = x.size(1)
        if is_batched:
            expected, layout = (self.num_layers, n, self.hidden_size), "(num_layers, N, H)"
        else:
            expected, layout = (self.num_layers, self.hidden_size), "(num_layers, H) unbatched"
        (h0,) = _states_from_hx(owner, h0, ("h0",), expected, layout, x)
        if self.mode == "log-space" and bool((h0 <= 0).any()):
            # log h_0 must exist; g keeps every state a layer returns positive.
            raise ValueError(
                f"{owner}: expected h0 > 0 everywhere in mode='log-space' (the scan takes its "
                f"logarithm), got minimum {h0.min().item():.3g}; pass None for zeros"
            )
        return list(h0 if is_batched else h0.unsqueeze(1))

    def _sequential(self, xw: Tensor, h: Tensor | None) -> Tensor:
        """One layer as a loop over time, the readable reference: (L, N, G·H) -> (L, N, H)."""
        raise NotImplementedError

    def _chunked(self, xw: Tensor, h: Tensor | None) -> Tensor:
        """One layer as a chunked scan over time: (L, N, G·H) -> (L, N, H).

        a_t and b_t are exp of their logarithms: σ(k) would carry its rounding near 1 into its
        gradient σ(k)(1 − σ(k)), 2e-4 relative at k = 8, where log σ(k) does not. They are
        formed and scanned in :func:`scan_dtype`: a float32 a_t = 1 − 3e-4 (a gate near 0)
        keeps only four digits of 1 − a_t, and that, summed over the gate's memory of
        thousands of steps, is 1e-5 in h and 3e-5 in the gradients at L = 16384.
        """
        log_a, log_b = self._log_coefficients(xw)
        dtype = scan_dtype(xw)
        log_a, log_b = log_a.to(dtype), log_b.to(dtype)
        h = chunked_scan(torch.exp(log_a), torch.exp(log_b), None if h is None else h.to(dtype))
        return h.to(xw.dtype)

    def _log_coefficients(self, xw: Tensor) -> tuple[Tensor, Tensor]:
        """log a_t and log b_t of (12.1), each (L, N, H), from xw (L, N, G·H)."""
        raise NotImplementedError


class MinGRU(_MinBase):
    """A stack of minGRU layers (Feng et al., 2024), equations (12.2)-(12.4).

    Args:
        input_size: H_in, the features of x_t.
        hidden_size: H, the features of h_t.
        num_layers: stacked layers; layer k > 0 reads the outputs h_t of layer k-1.
        bias: whether to have the ``bias_l{k}`` parameters.
        batch_first: input and output are (N, L, ·) instead of (L, N, ·); h0 and h_n are not.
        mode: ``"parallel"``, a chunked scan over time (:func:`chunked_scan`), as accurate
            as the loop at any length; ``"sequential"``, a loop over time; or
            ``"log-space"``, the log-space scan (:func:`log_space_scan`) of the paper, kept
            for comparison: in float32 it loses accuracy with length (about 1e-3 in h and
            far more in the gradients at L = 16384). All three compute the same function.
        device, dtype: where and in which dtype to create the parameters.

    Shapes:
        input: (L, N, H_in), (N, L, H_in) if batch_first, or (L, H_in) unbatched.
        h0: (num_layers, N, H), or (num_layers, H) unbatched; zeros if None. In log-space
            mode every entry must be > 0 (its logarithm is taken); a returned h_n always is.
        returns: (output, h_n): output (L, N, H) in the input's layout, the last layer's h_t;
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


# ------------------------------------------------------------------------------------------------
# The sLSTM (Beck et al., 2024): an LSTM with an exponential input gate, a normaliser state n_t
# and, to keep exp from overflowing, a stabiliser state m_t. Pre-activations ĩ_t, f̃_t, z̃_t, õ_t
# are W x_t + R h_{t-1} + b, as in the LSTM.
#
#     (12.10)  c_t = f_t ⊙ c_{t-1} + i_t ⊙ z_t,   z_t = tanh(z̃_t),  i_t = exp(ĩ_t),  f_t = σ(f̃_t)
#     (12.11)  n_t = f_t ⊙ n_{t-1} + i_t                                            normaliser
#     (12.12)  h_t = o_t ⊙ c_t / n_t,               o_t = σ(õ_t)
#     (12.13)  m_t = max(log f_t + m_{t-1}, ĩ_t) (ĩ_t where n_{t-1} = 0),            stabiliser
#              i'_t = exp(ĩ_t − m_t),  f'_t = exp(log f_t + m_{t-1} − m_t)
#
# The stabilised form uses i'_t and f'_t in place of i_t and f_t in (12.10)-(12.11): its c_t and
# n_t are the unstabilised ones times exp(−m_t), so their ratio, and h_t, are the same.
# ------------------------------------------------------------------------------------------------


def slstm_step(
    xw_t: Tensor, state: State, w_hh_t: Tensor, stabilised: bool = True
) -> tuple[State, State]:
    """One sLSTM step, equations (12.10)-(12.13).

    Args:
        xw_t: (N, 4H) the input part of the four pre-activations, ``W x_t + b``, computed
            ahead; columns i, f, z, o.
        state: ``(h_{t-1}, c_{t-1}, n_{t-1}, m_{t-1})``, each (N, H).
        w_hh_t: (H, 4H) the recurrent weights R of the four, transposed.
        stabilised: use the stabiliser m_t (12.13); without it i_t = exp(ĩ_t)
            overflows once ĩ_t passes about 88 in float32, and m_t stays as it came.

    Returns:
        ``((h_t, c_t, n_t, m_t), (i_t, f_t, z_t, o_t))``, each (N, H); i_t and f_t are the
        gates actually applied (i'_t and f'_t when stabilised).
    """
    h, c, n, m = state
    i_tilde, f_tilde, z, o = torch.addmm(xw_t, h, w_hh_t).chunk(4, dim=-1)
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
        owner = type(self).__name__
        check_int(owner, "input_size", input_size)
        check_int(owner, "hidden_size", hidden_size)
        _check_bool(owner, "bias", bias)
        _check_bool(owner, "stabilised", stabilised)
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
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, stabilised={self.stabilised}"

    def forward(self, input: Tensor, state: Sequence[Tensor] | None = None) -> State:
        owner = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{owner}: expected input to be a Tensor, got {type(input).__name__}")
        _check_input(owner, input, {2: "(N, H_in)", 1: "(H_in,)"}, self.input_size, self.weight_ih)
        is_batched = input.dim() == 2
        x = input if is_batched else input.unsqueeze(0)
        states = _slstm_states(owner, state, x, (x.size(0), self.hidden_size), is_batched)
        xw = F.linear(x, self.weight_ih, self.bias)
        states, _ = slstm_step(xw, states, self.weight_hh.t(), self.stabilised)
        return states if is_batched else tuple(s.squeeze(0) for s in states)


def _slstm_states(
    owner: str, state: Any, x: Tensor, shape: tuple[int, ...], is_batched: bool
) -> State:
    """Check a user's (h, c, n, m) of ``shape`` (batched) and return it batched; zeros if
    None."""
    names = SLSTMCell._state_names
    if state is None:
        return tuple(x.new_zeros(shape) for _ in names)
    if not isinstance(state, (tuple, list)) or len(state) != 4:
        got = type(state).__name__
        if isinstance(state, (tuple, list)):
            got += f" of length {len(state)}"
        raise TypeError(f"{owner}: expected state to be a tuple (h, c, n, m), got {got}")
    expected = shape if is_batched else shape[:-2] + shape[-1:]
    for name, s in zip(names, state):
        if not isinstance(s, Tensor):
            raise TypeError(f"{owner}: expected {name} to be a Tensor, got {type(s).__name__}")
        if tuple(s.shape) != expected:
            raise ShapeError(f"{owner}: expected {name} of shape {expected}, got {tuple(s.shape)}")
        _check_like(owner, name, s, x, "the input's")
    return tuple(state) if is_batched else tuple(s.unsqueeze(-2) for s in state)


class SLSTM(nn.Module):
    """A stack of sLSTM layers: :class:`SLSTMCell` run over time.

    Args:
        input_size, hidden_size, bias, stabilised, device, dtype: as :class:`SLSTMCell`.
        num_layers: stacked layers; layer k > 0 reads the outputs h_t of layer k-1.
        batch_first: input and output are (N, L, ·) instead of (L, N, ·); states are not.

    Shapes:
        input: (L, N, H_in), (N, L, H_in) if batch_first, or (L, H_in) unbatched.
        state: ``(h, c, n, m)``, each (num_layers, N, H) (or (num_layers, H) unbatched);
            zeros if None.
        returns: (output, (h_n, c_n, n_n, m_n)): output (L, N, H) in the input's layout, the
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
        _check_bool("SLSTM", "batch_first", batch_first)
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
        owner = type(self).__name__
        weight = self.cells[0].weight_ih
        x, is_batched = _time_major(owner, input, self.batch_first, self.input_size, weight)
        shape = (self.num_layers, x.size(1), self.hidden_size)
        states = _slstm_states(owner, state, x, shape, is_batched)
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
            return x.squeeze(1), tuple(v.squeeze(1) for v in final)
        return (x.transpose(0, 1) if self.batch_first else x), final
