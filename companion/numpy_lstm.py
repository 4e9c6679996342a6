r"""An LSTM in NumPy, with backpropagation through time written out by hand.

Nothing here is learned from autograd: every gradient is derived on paper first, and each line of
code below cites the equation it implements. The tests check the result against PyTorch's autograd
to about 1e-10 in float64, and against central differences.

Shapes follow PyTorch: ``L`` steps, ``N`` sequences in a batch, ``I`` input features, ``H`` hidden
units. Sequences are time-major, ``x`` is ``(T, N, I)``. A vector of the maths is a *row* of the
code (``x_t`` is ``(N, I)``), so ``W x`` is written ``x @ W.T`` and ``Wᵀ d`` is written ``d @ W``.

Parameters
==========

The parameters use PyTorch's layout, so they copy both ways (:func:`params_from_torch`,
:func:`params_to_torch`)::

    weight_ih  (4H, I)  = [W_xi; W_xf; W_xg; W_xo]     rows of the gates i, f, g, o, stacked
    weight_hh  (4H, H)  = [W_hi; W_hf; W_hg; W_ho]
    bias_ih    (4H,)    \  b_* = bias_ih + bias_hh: PyTorch keeps two bias vectors though only
    bias_hh    (4H,)    /  their sum matters, so both always receive the same gradient.

Forward, one step
=================

::

    i_t = σ(W_xi x_t + W_hi h_{t-1} + b_i)        (1)  input gate: how much of g_t to write
    f_t = σ(W_xf x_t + W_hf h_{t-1} + b_f)        (2)  forget gate: how much of c_{t-1} to keep
    g_t = tanh(W_xg x_t + W_hg h_{t-1} + b_g)     (3)  candidate cell content
    o_t = σ(W_xo x_t + W_ho h_{t-1} + b_o)        (4)  output gate: how much of the cell to show
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t               (5)  cell state
    h_t = o_t ⊙ tanh(c_t)                         (6)  hidden state

Write ``a_i, a_f, a_g, a_o`` for the pre-activations, the arguments of σ and tanh in (1)-(4), and
``a = [a_i, a_f, a_g, a_o]`` for all four stacked (``(N, 4H)`` in code).

Backward, one step
==================

A step receives ``dh = ∂ℓ/∂h_t`` and ``dc = ∂ℓ/∂c_t``: what the loss ℓ says about the two states
this step produced, through every path that does not go back through (6). With σ' = σ(1 − σ) and
tanh' = 1 − tanh²::

    dc_total = dc + dh ⊙ o_t ⊙ (1 − tanh²(c_t))     (7)   c_t reaches ℓ directly and through (6)
    da_o     = dh ⊙ tanh(c_t) ⊙ o_t(1 − o_t)        (8)   from (6) and (4)
    da_i     = dc_total ⊙ g_t ⊙ i_t(1 − i_t)        (9)   from (5) and (1)
    da_f     = dc_total ⊙ c_{t-1} ⊙ f_t(1 − f_t)    (10)  from (5) and (2)
    da_g     = dc_total ⊙ i_t ⊙ (1 − g_t²)          (11)  from (5) and (3)
    dc_{t-1} = dc_total ⊙ f_t                       (12)  from (5): "constant error carousel"
    dh_{t-1} = W_hhᵀ da,    dx_t = W_ihᵀ da         (13)  da = [da_i; da_f; da_g; da_o]
    dW_ih += da x_tᵀ,  dW_hh += da h_{t-1}ᵀ,  db_ih += da,  db_hh += da      (14)

(12) is why the LSTM remembers: along the cell path the gradient is only multiplied by the forget
gate, never by a weight matrix or a squashing derivative.

Backward through time
=====================

``hs[t] = h_t`` may feed a loss at every step; ``dhs[t] = ∂ℓ/∂hs[t]`` is that direct gradient. Going
back from ``t = L-1`` to ``0``, the gradient on ``h_t`` is the direct part plus what step ``t+1``
sends back by (13); the cell only receives what (12) sends back::

    dh_t = dhs[t] + dh_t(from step t+1),   dc_t = dc_t(from step t+1)      (15)

starting from ``dh_T`` and ``dc_T`` (gradients on the final state, zero if not given), and summing
(14) over all steps, since every step uses the same weights. What (13) and (12) send out of step
0 is the gradient on the initial state, ``dh0`` and ``dc0``.

Truncated BPTT (``truncate=k``) is defined in :func:`lstm_backward`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from companion._checks import check_int

__all__ = [
    "Adam",
    "LSTMCache",
    "NumpyLSTMRegressor",
    "SGD",
    "StepCache",
    "gradient_check",
    "init_params",
    "lstm_backward",
    "lstm_forward",
    "lstm_step_backward",
    "lstm_step_forward",
    "numerical_gradient",
    "params_from_torch",
    "params_to_torch",
]

Params = dict[str, np.ndarray]

#: The LSTM's parameter names, as in ``torch.nn.LSTMCell`` (``torch.nn.LSTM`` adds ``_l0``).
LSTM_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


# --------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------


def init_params(
    input_size: int,
    hidden_size: int,
    *,
    seed: int = 0,
    dtype: Any = np.float64,
    bias: bool = True,
) -> Params:
    """Fresh LSTM parameters, drawn like PyTorch's: every entry from U(−1/√H, 1/√H).

    Args:
        input_size: ``I``, features per step.
        hidden_size: ``H``, units in ``h`` and ``c``.
        seed: seed of the NumPy generator, so the same seed gives the same parameters.
        dtype: float64 by default, which the gradient check needs.
        bias: without bias only the two weight matrices are returned.

    Returns:
        ``{"weight_ih": (4H, I), "weight_hh": (4H, H), "bias_ih": (4H,), "bias_hh": (4H,)}``.
    """
    check_int("init_params", "input_size", input_size)
    check_int("init_params", "hidden_size", hidden_size)
    rng = np.random.default_rng(seed)
    bound = 1.0 / math.sqrt(hidden_size)
    shapes = {
        "weight_ih": (4 * hidden_size, input_size),
        "weight_hh": (4 * hidden_size, hidden_size),
        "bias_ih": (4 * hidden_size,),
        "bias_hh": (4 * hidden_size,),
    }
    if not bias:
        del shapes["bias_ih"], shapes["bias_hh"]
    return {
        key: rng.uniform(-bound, bound, size=shape).astype(dtype) for key, shape in shapes.items()
    }


def _torch_names(module: Any, where: str) -> dict[str, str]:
    """Map our keys to the parameter names of an LSTM module, or say clearly why it cannot be
    used."""
    torch = sys.modules.get("torch")  # a torch module was passed only if torch is loaded
    kind = type(module).__name__
    expected = (
        "torch.nn.LSTM (num_layers=1, unidirectional, proj_size=0), torch.nn.LSTMCell or their "
        "companion.models twins"
    )
    if torch is None or not isinstance(module, torch.nn.Module):
        raise TypeError(f"{where}: expected {expected}, got {kind}")
    # The companion twins are separate classes with the same names and parameter names.
    is_layer = isinstance(module, torch.nn.LSTM) or kind == "LSTM"
    is_cell = isinstance(module, torch.nn.LSTMCell) or kind == "LSTMCell"
    if not (is_layer or is_cell):
        raise TypeError(f"{where}: expected {expected}, got {kind}")
    if is_layer:
        settings = {
            "num_layers": (getattr(module, "num_layers", 1), 1),
            "bidirectional": (getattr(module, "bidirectional", False), False),
            "proj_size": (getattr(module, "proj_size", 0), 0),
        }
        for name, (value, wanted) in settings.items():
            if value != wanted:
                raise ValueError(f"{where}: expected {expected}, got {kind} with {name}={value!r}")
    suffix = "_l0" if is_layer else ""
    present = dict(module.named_parameters())
    names = {key: key + suffix for key in LSTM_KEYS if key + suffix in present}
    if "weight_ih" not in names or "weight_hh" not in names:
        raise ValueError(
            f"{where}: expected parameters {'weight_ih' + suffix} and {'weight_hh' + suffix} in "
            f"{kind}, got {sorted(present)}"
        )
    hidden = present[names["weight_hh"]].shape[1]
    if present[names["weight_ih"]].shape[0] != 4 * hidden:
        raise ValueError(
            f"{where}: expected an LSTM with 4H = {4 * hidden} gate rows, got weight_ih of shape "
            f"{tuple(present[names['weight_ih']].shape)} in {kind}"
        )
    return names


def params_from_torch(module: Any, *, dtype: Any = np.float64) -> Params:
    """Copy the parameters of a PyTorch LSTM into a NumPy parameter dict.

    Args:
        module: ``torch.nn.LSTM`` with ``num_layers=1``, unidirectional, ``proj_size=0`` (its
            ``*_l0`` parameters are used), ``torch.nn.LSTMCell``, or the ``companion.models`` twins.
        dtype: dtype of the copies; float64 by default so the gradient check works, ``None`` keeps
            the module's dtype.

    Returns:
        ``weight_ih (4H, I)``, ``weight_hh (4H, H)`` and, when the module has biases,
        ``bias_ih (4H,)``, ``bias_hh (4H,)``: copies that share no memory with the module.

    Raises:
        TypeError: if ``module`` is not an LSTM (a GRU, an RNN, not a module at all).
        ValueError: for a stacked, bidirectional or projected ``LSTM``.
    """
    names = _torch_names(module, "params_from_torch")
    present = dict(module.named_parameters())
    out = {}
    for key, name in names.items():
        array = present[name].detach().cpu().numpy()
        out[key] = np.array(array, dtype=dtype if dtype is not None else array.dtype, copy=True)
    return out


def params_to_torch(params: Mapping[str, np.ndarray], module: Any) -> Any:
    """Copy NumPy parameters into a PyTorch LSTM in place (dtype and device follow the module).

    Args:
        params: as returned by :func:`init_params`; extra keys (a regressor's head) are ignored.
        module: same kinds as :func:`params_from_torch` accepts.

    Returns:
        ``module``, for chaining.

    Raises:
        ValueError: if a parameter is missing on either side or its shape differs.
    """
    names = _torch_names(module, "params_to_torch")
    torch = sys.modules["torch"]  # loaded: _torch_names found a torch module
    present = dict(module.named_parameters())
    ours = {key for key in LSTM_KEYS if key in params}
    if ours != set(names):
        raise ValueError(
            f"params_to_torch: expected parameters {sorted(names)} for {type(module).__name__}, "
            f"got {sorted(ours)}"
        )
    with torch.no_grad():
        for key, name in names.items():
            target = present[name]
            source = np.asarray(params[key])
            if tuple(source.shape) != tuple(target.shape):
                raise ValueError(
                    f"params_to_torch: expected {key} of shape {tuple(target.shape)} for "
                    f"{name}, got shape {source.shape}"
                )
            target.copy_(torch.as_tensor(source))
    return module


# --------------------------------------------------------------------------------------------------
# One step
# --------------------------------------------------------------------------------------------------


def _sigmoid(a: np.ndarray) -> np.ndarray:
    """σ(a) = 1 / (1 + e^{−a}), via log(1 + e^{−a}) = logaddexp(0, −a), which never overflows."""
    return np.exp(-np.logaddexp(0.0, -a))


@dataclass
class StepCache:
    """What one forward step keeps for its backward step; every array is ``(N, ·)``.

    The gates are stored after their non-linearity: σ' = σ(1 − σ) and tanh' = 1 − tanh² are
    cheaper from the outputs than from the pre-activations.
    """

    x: np.ndarray  # x_t (N, I)
    h_prev: np.ndarray  # h_{t-1} (N, H)
    c_prev: np.ndarray  # c_{t-1} (N, H)
    i: np.ndarray  # (N, H), eq. (1)
    f: np.ndarray  # (N, H), eq. (2)
    g: np.ndarray  # (N, H), eq. (3)
    o: np.ndarray  # (N, H), eq. (4)
    c: np.ndarray  # c_t (N, H), eq. (5)
    tanh_c: np.ndarray  # tanh(c_t) (N, H), needed by (6), (7) and (8)


def lstm_step_forward(
    params: Mapping[str, np.ndarray],
    x_t: np.ndarray,
    h_prev: np.ndarray,
    c_prev: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, StepCache]:
    """One LSTM step, equations (1)-(6).

    Args:
        params: ``weight_ih (4H, I)``, ``weight_hh (4H, H)``, optionally ``bias_ih``, ``bias_hh``
            ``(4H,)``; other keys are ignored.
        x_t: input ``(N, I)``.
        h_prev: ``h_{t-1}`` ``(N, H)``.
        c_prev: ``c_{t-1}`` ``(N, H)``.

    Returns:
        ``h_t (N, H)``, ``c_t (N, H)`` and the :class:`StepCache` for :func:`lstm_step_backward`.
    """
    hidden, inputs = _check_params(params, "lstm_step_forward")
    x_t = np.asarray(x_t)
    _check_shape("lstm_step_forward", "x_t", x_t, "(N, I)", (None, inputs))
    batch = x_t.shape[0]
    h_prev = np.asarray(h_prev)
    c_prev = np.asarray(c_prev)
    _check_shape("lstm_step_forward", "h_prev", h_prev, "(N, H)", (batch, hidden))
    _check_shape("lstm_step_forward", "c_prev", c_prev, "(N, H)", (batch, hidden))

    # The four gates read the same x_t and h_{t-1}; with their rows stacked as in PyTorch, (1)-(4)
    # cost two matrix products instead of eight.
    a = x_t @ params["weight_ih"].T + h_prev @ params["weight_hh"].T  # (N, 4H)
    if "bias_ih" in params:
        a = a + params["bias_ih"] + params["bias_hh"]
    a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)

    i = _sigmoid(a_i)  # (1)
    f = _sigmoid(a_f)  # (2)
    g = np.tanh(a_g)  # (3)
    o = _sigmoid(a_o)  # (4)
    c = f * c_prev + i * g  # (5)
    tanh_c = np.tanh(c)
    h = o * tanh_c  # (6)
    return h, c, StepCache(x_t, h_prev, c_prev, i, f, g, o, c, tanh_c)


def lstm_step_backward(
    dh: np.ndarray,
    dc: Optional[np.ndarray],
    step_cache: StepCache,
    params: Mapping[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Params]:
    """Backward through one step, equations (7)-(14).

    Args:
        dh: ``∂ℓ/∂h_t`` ``(N, H)``: every path from ``h_t`` to the loss.
        dc: ``∂ℓ/∂c_t`` ``(N, H)`` through paths that avoid (6), i.e. through ``c_t``'s use in the
            next step (``None`` means zero, as for the last step).
        step_cache: from :func:`lstm_step_forward`.
        params: the parameters the forward step used.

    Returns:
        ``dx_t (N, I)``, ``dh_prev (N, H)``, ``dc_prev (N, H)`` and ``step_grads``: this step's
        contribution (14) to the gradient of each parameter, same keys and shapes as ``params``.
    """
    hidden, inputs = _check_params(params, "lstm_step_backward")
    s = step_cache
    if s.x.shape[1] != inputs or s.h_prev.shape[1] != hidden:
        raise ValueError(
            f"lstm_step_backward: expected a step cache for I = {inputs}, H = {hidden}, got one "
            f"for I = {s.x.shape[1]}, H = {s.h_prev.shape[1]}"
        )
    dh = np.asarray(dh)
    _check_shape("lstm_step_backward", "dh", dh, "(N, H)", s.h_prev.shape)
    if dc is None:
        dc = np.zeros_like(dh)
    dc = np.asarray(dc)
    _check_shape("lstm_step_backward", "dc", dc, "(N, H)", s.h_prev.shape)

    dc_total = dc + dh * s.o * (1.0 - s.tanh_c**2)  # (7)
    da_o = dh * s.tanh_c * s.o * (1.0 - s.o)  # (8)
    da_i = dc_total * s.g * s.i * (1.0 - s.i)  # (9)
    da_f = dc_total * s.c_prev * s.f * (1.0 - s.f)  # (10)
    da_g = dc_total * s.i * (1.0 - s.g**2)  # (11)
    dc_prev = dc_total * s.f  # (12)

    da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)  # (N, 4H), gate rows in PyTorch order
    dh_prev = da @ params["weight_hh"]  # (13): W_hhᵀ da, written for rows
    dx_t = da @ params["weight_ih"]  # (13)

    # (14): a sum over the batch, which the matrix product does for us.
    step_grads = {"weight_ih": da.T @ s.x, "weight_hh": da.T @ s.h_prev}
    if "bias_ih" in params:
        db = da.sum(axis=0)
        step_grads["bias_ih"] = db
        step_grads["bias_hh"] = db.copy()  # b_ih and b_hh only appear as their sum
    return dx_t, dh_prev, dc_prev, step_grads


# --------------------------------------------------------------------------------------------------
# A sequence
# --------------------------------------------------------------------------------------------------


@dataclass
class LSTMCache:
    """What :func:`lstm_forward` keeps for :func:`lstm_backward`: a :class:`StepCache` per step."""

    steps: list[StepCache]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(T, N, I, H)`` of the forward pass that filled this cache."""
        first = self.steps[0]
        return len(self.steps), first.x.shape[0], first.x.shape[1], first.h_prev.shape[1]


def lstm_forward(
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    h0: Optional[np.ndarray] = None,
    c0: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], LSTMCache]:
    """Run the LSTM over a sequence: (1)-(6) for ``t = 0 … L-1``.

    Args:
        params: see :func:`lstm_step_forward`.
        x: inputs ``(T, N, I)``, time-major like ``torch.nn.LSTM``'s default.
        h0: initial hidden state ``(N, H)``; zeros if ``None``. (``torch.nn.LSTM``'s ``h_0`` is
            ``(1, N, H)``: pass ``h_0[0]``.)
        c0: initial cell state ``(N, H)``; zeros if ``None``.

    Returns:
        ``hs (T, N, H)`` (``hs[t] = h_t``, like ``torch.nn.LSTM``'s output), ``(h_T, c_T)`` each
        ``(N, H)``, and the :class:`LSTMCache` for :func:`lstm_backward`.
    """
    hidden, inputs = _check_params(params, "lstm_forward")
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(
            f"lstm_forward: expected x with 3 dimensions (L, N, I), got shape {x.shape}"
        )
    _check_shape("lstm_forward", "x", x, "(L, N, I)", (None, None, inputs))
    steps, batch = x.shape[:2]
    if steps == 0:
        raise ValueError(
            f"lstm_forward: expected x with at least one step (L >= 1), got shape {x.shape}"
        )
    dtype = np.result_type(params["weight_ih"], x)
    h = _state_or_zeros("lstm_forward", "h0", h0, (batch, hidden), dtype)
    c = _state_or_zeros("lstm_forward", "c0", c0, (batch, hidden), dtype)

    hs = np.empty((steps, batch, hidden), dtype=dtype)
    caches = []
    for t in range(steps):
        h, c, step = lstm_step_forward(params, x[t], h, c)
        hs[t] = h
        caches.append(step)
    return hs, (h, c), LSTMCache(caches)


def lstm_backward(
    params: Mapping[str, np.ndarray],
    cache: LSTMCache,
    dhs: Optional[np.ndarray],
    dh_T: Optional[np.ndarray] = None,
    dc_T: Optional[np.ndarray] = None,
    truncate: Optional[int] = None,
) -> tuple[Params, np.ndarray, np.ndarray, np.ndarray]:
    """Backpropagation through time, full (15) or truncated.

    Args:
        params: the parameters :func:`lstm_forward` used.
        cache: from :func:`lstm_forward`.
        dhs: ``(T, N, H)``, ``dhs[t] = ∂ℓ/∂hs[t]``, the direct gradient of the loss on each output;
            ``None`` means zero (a loss on the final state only, given by ``dh_T``/``dc_T``).
        dh_T: ``(N, H)``, gradient on the returned ``h_T`` (added to ``dhs[L-1]``, since
            ``h_T = hs[L-1]``); ``None`` means zero.
        dc_T: ``(N, H)``, gradient on the returned ``c_T``; ``None`` means zero.
        truncate: ``None`` for full BPTT, or ``k >= 1``: see below.

    Returns:
        ``grads`` (same keys and shapes as the LSTM entries of ``params``), ``dx (T, N, I)``,
        ``dh0 (N, H)``, ``dc0 (N, H)`` (gradients on the initial state, also when it defaulted to
        zeros).

    Truncation, precisely. The loss at step ``t`` is the part of ℓ that ``dhs[t]`` carries (for
    ``t = L-1`` also ``dh_T`` and ``dc_T``). With ``truncate=k`` it is backpropagated through the
    ``k`` most recent steps ``t, t-1, …, t-k+1`` only: their weights and their inputs ``x_s``
    receive its gradient, and the gradient that reaches the state ``(h_{t-k}, c_{t-k})`` entering
    that window is dropped, as if the state had been detached (``.detach()`` in PyTorch). When the
    window reaches the start (``t-k+1 <= 0``) nothing is dropped: the initial state is an input of
    step 0 like ``x_0`` and receives the gradient, as ``dh0``/``dc0``. So ``truncate=1`` lets each
    step's loss see its own step only, and any ``truncate >= L`` is full BPTT (handled by the same
    single sweep as ``None``). Each step's loss gets its own window (Williams and Peng's BPTT(h),
    Sutskever's TBPTT(k1=1, k2=k)), which costs O(T·k) step backwards instead of O(T): clear and
    exact, but meant for teaching. Training code usually splits the sequence into chunks and
    detaches the state between them, which truncates at chunk boundaries instead.
    """
    hidden, inputs = _check_params(params, "lstm_backward")
    if not isinstance(cache, LSTMCache) or not cache.steps:
        raise TypeError(
            "lstm_backward: expected the LSTMCache returned by lstm_forward, got "
            f"{type(cache).__name__}"
        )
    steps, batch, cache_inputs, cache_hidden = cache.shape
    if (cache_inputs, cache_hidden) != (inputs, hidden):
        raise ValueError(
            f"lstm_backward: expected a cache for I = {inputs}, H = {hidden} (from params), got "
            f"one for I = {cache_inputs}, H = {cache_hidden}"
        )
    dtype = cache.steps[0].h_prev.dtype
    if dhs is None:
        dhs = np.zeros((steps, batch, hidden), dtype=dtype)
    dhs = np.asarray(dhs)
    _check_shape("lstm_backward", "dhs", dhs, "(L, N, H)", (steps, batch, hidden))
    dh_T = _state_or_zeros("lstm_backward", "dh_T", dh_T, (batch, hidden), dtype)
    dc_T = _state_or_zeros("lstm_backward", "dc_T", dc_T, (batch, hidden), dtype)
    if truncate is not None:
        truncate = check_int("lstm_backward", "truncate", truncate)

    if truncate is None or truncate >= steps:
        return _bptt_full(params, cache, dhs, dh_T, dc_T)
    return _bptt_windowed(params, cache, dhs, dh_T, dc_T, int(truncate))


def _zero_grads(params: Mapping[str, np.ndarray]) -> Params:
    return {key: np.zeros_like(params[key]) for key in LSTM_KEYS if key in params}


def _bptt_full(
    params: Mapping[str, np.ndarray],
    cache: LSTMCache,
    dhs: np.ndarray,
    dh_T: np.ndarray,
    dc_T: np.ndarray,
) -> tuple[Params, np.ndarray, np.ndarray, np.ndarray]:
    """One sweep from ``t = L-1`` down to 0, carrying ``(dh, dc)`` back.

    Equations (12), (13) and (15); chapter 10 prints this function, so its
    lines stay within 80 columns.
    """
    steps, batch, inputs, _ = cache.shape
    grads = _zero_grads(params)
    dx = np.zeros((steps, batch, inputs), dtype=dhs.dtype)
    # What "step L" sends back: the gradients on the final state.
    dh_next, dc_next = dh_T, dc_T
    for t in reversed(range(steps)):
        dh = dhs[t] + dh_next  # (15)
        dx[t], dh_next, dc_next, step_grads = lstm_step_backward(
            dh, dc_next, cache.steps[t], params
        )
        for key, value in step_grads.items():
            # (14), summed over time: one set of weights serves every step
            grads[key] += value
    return grads, dx, dh_next, dc_next


def _bptt_windowed(
    params: Mapping[str, np.ndarray],
    cache: LSTMCache,
    dhs: np.ndarray,
    dh_T: np.ndarray,
    dc_T: np.ndarray,
    truncate: int,
) -> tuple[Params, np.ndarray, np.ndarray, np.ndarray]:
    """Truncated BPTT as defined in :func:`lstm_backward`: one window of ``truncate`` steps per
    loss."""
    steps, batch, inputs, hidden = cache.shape
    grads = _zero_grads(params)
    dx = np.zeros((steps, batch, inputs), dtype=dhs.dtype)
    dh0 = np.zeros((batch, hidden), dtype=dhs.dtype)
    dc0 = np.zeros_like(dh0)
    for t in reversed(range(steps)):
        dh = dhs[t] + (dh_T if t == steps - 1 else 0.0)
        dc = dc_T if t == steps - 1 else np.zeros_like(dh)
        if not (dh.any() or dc.any()):
            continue  # this step has no loss of its own (e.g. a loss on h_T only)
        start = max(0, t - truncate + 1)
        for s in range(t, start - 1, -1):
            dx_s, dh, dc, step_grads = lstm_step_backward(dh, dc, cache.steps[s], params)
            dx[s] += dx_s
            for key, value in step_grads.items():
                grads[key] += value
        if start == 0:
            dh0 += dh
            dc0 += dc
        # Otherwise (dh, dc) is the gradient on (h_{start-1}, c_{start-1}): dropping it is the
        # truncation.
    return grads, dx, dh0, dc0


# --------------------------------------------------------------------------------------------------
# Checking gradients
# --------------------------------------------------------------------------------------------------


def numerical_gradient(
    f: Callable[[Params], float],
    params: Params,
    key: str,
    eps: float = 1e-6,
) -> np.ndarray:
    """Central differences ``(f(p + eps) - f(p - eps)) / (2 eps)``, one entry of ``params[key]``
    at a time.

    ``params[key]`` is perturbed in place (so ``f`` may read the same dict, or a model holding it)
    and restored exactly afterwards, also if ``f`` raises. The error is O(eps²) plus rounding of
    order ``|f| · 1e-16 / eps``: use float64.

    Args:
        f: scalar function of the whole parameter dict.
        params: dict of arrays; only ``params[key]`` is touched.
        key: the array to differentiate against.
        eps: half the step.

    Returns:
        An array shaped like ``params[key]``.
    """
    if key not in params:
        raise KeyError(f"numerical_gradient: expected key in {sorted(params)}, got {key!r}")
    p = params[key]
    if not (isinstance(p, np.ndarray) and np.issubdtype(p.dtype, np.floating)):
        raise TypeError(
            f"numerical_gradient: expected params[{key!r}] to be a floating-point numpy array, "
            f"got {type(p).__name__} {getattr(p, 'dtype', '')}"
        )
    grad = np.zeros(p.shape, dtype=np.float64)
    for index in np.ndindex(p.shape):
        old = p[index]
        try:
            p[index] = old + eps
            f_plus = float(f(params))
            p[index] = old - eps
            f_minus = float(f(params))
        finally:
            p[index] = old
        grad[index] = (f_plus - f_minus) / (2.0 * eps)
    return grad


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """‖a − b‖ / (‖a‖ + ‖b‖): scale-free, and unlike an entry-wise ratio not fooled by entries
    near 0."""
    denominator = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denominator) if denominator > 0 else 0.0


def gradient_check(
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    h0: Optional[np.ndarray] = None,
    c0: Optional[np.ndarray] = None,
    *,
    seed: int = 0,
    eps: float = 1e-6,
) -> float:
    """Compare :func:`lstm_backward` with central differences on a random linear loss.

    The loss ``ℓ = Σ A ⊙ hs + Σ B ⊙ h_T + Σ C ⊙ c_T`` with fixed random ``A (T, N, H)``,
    ``B, C (N, H)`` makes ``dhs = A``, ``dh_T = B``, ``dc_T = C``, so every input of
    :func:`lstm_backward` is exercised. Checked: every LSTM parameter and ``x``, ``h0``, ``c0`` (the
    gradient on a zero initial state when they are ``None``). Everything is copied to float64
    first; the arguments are not modified.

    Args:
        params: LSTM parameters (extra keys ignored).
        x: ``(T, N, I)``; keep it small, the check costs 2 forward passes per entry.
        h0, c0: ``(N, H)`` or ``None``.
        seed: seed of the random loss weights.
        eps: finite-difference half step.

    Returns:
        The largest relative error ‖analytic − numerical‖ / (‖analytic‖ + ‖numerical‖) over the
        checked arrays; around 1e-9 or below when the backward pass is right.
    """
    hidden, _ = _check_params(params, "gradient_check")
    probe: Params = {
        key: np.array(params[key], dtype=np.float64) for key in LSTM_KEYS if key in params
    }
    probe["x"] = np.array(x, dtype=np.float64)
    if probe["x"].ndim != 3:
        raise ValueError(
            f"gradient_check: expected x with 3 dimensions (L, N, I), got shape {probe['x'].shape}"
        )
    steps, batch = probe["x"].shape[:2]
    probe["h0"] = _state_or_zeros("gradient_check", "h0", h0, (batch, hidden), np.float64).astype(
        np.float64
    )
    probe["c0"] = _state_or_zeros("gradient_check", "c0", c0, (batch, hidden), np.float64).astype(
        np.float64
    )

    rng = np.random.default_rng(seed)
    weight_hs = rng.standard_normal((steps, batch, hidden))
    weight_h_T = rng.standard_normal((batch, hidden))
    weight_c_T = rng.standard_normal((batch, hidden))

    def loss(p: Params) -> float:
        hs, (h_T, c_T), _ = lstm_forward(p, p["x"], p["h0"], p["c0"])
        return float(np.sum(weight_hs * hs) + np.sum(weight_h_T * h_T) + np.sum(weight_c_T * c_T))

    _, _, cache = lstm_forward(probe, probe["x"], probe["h0"], probe["c0"])
    grads, dx, dh0, dc0 = lstm_backward(probe, cache, weight_hs, dh_T=weight_h_T, dc_T=weight_c_T)
    analytic = {**grads, "x": dx, "h0": dh0, "c0": dc0}
    return max(
        _relative_error(analytic[key], numerical_gradient(loss, probe, key, eps=eps))
        for key in analytic
    )


# --------------------------------------------------------------------------------------------------
# Optimisers
# --------------------------------------------------------------------------------------------------


def _check_grads(
    where: str, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]
) -> None:
    for key, grad in grads.items():
        if key not in params:
            raise KeyError(f"{where}: expected gradient keys among {sorted(params)}, got {key!r}")
        if np.shape(grad) != np.shape(params[key]):
            raise ValueError(
                f"{where}: expected gradient {key!r} of shape {np.shape(params[key])}, got shape "
                f"{np.shape(grad)}"
            )


class SGD:
    """Plain gradient descent: ``p ← p − lr · ∂ℓ/∂p``."""

    def __init__(self, lr: float) -> None:
        if not lr > 0:
            raise ValueError(f"SGD: expected lr > 0, got {lr!r}")
        self.lr = lr

    def step(self, params: Params, grads: Mapping[str, np.ndarray]) -> None:
        """Update, in place, every ``params[key]`` that ``grads`` has a gradient for."""
        _check_grads("SGD.step", params, grads)
        for key, grad in grads.items():
            params[key] -= self.lr * grad


class Adam:
    """Adam (Kingma and Ba, 2015), step for step as ``torch.optim.Adam`` without weight decay.

    Per parameter, with step count ``t`` starting at 1::

        m ← β1 m + (1 − β1) d              running mean of the gradient d
        v ← β2 v + (1 − β2) d²             running mean of its square
        p ← p − lr / (1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + eps)

    The two corrections undo the bias of ``m`` and ``v`` towards their zero start.
    """

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"Adam: expected lr > 0, got {lr!r}")
        if len(betas) != 2 or not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"Adam: expected betas (β1, β2) each in [0, 1), got {betas!r}")
        if not eps >= 0:
            raise ValueError(f"Adam: expected eps >= 0, got {eps!r}")
        self.lr = lr
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = eps
        self.t = 0
        self.m: Params = {}
        self.v: Params = {}

    def step(self, params: Params, grads: Mapping[str, np.ndarray]) -> None:
        """Update, in place, every ``params[key]`` that ``grads`` has a gradient for."""
        _check_grads("Adam.step", params, grads)
        beta1, beta2 = self.betas
        self.t += 1
        step_size = self.lr / (1.0 - beta1**self.t)
        correction2_sqrt = math.sqrt(1.0 - beta2**self.t)
        for key, grad in grads.items():
            m = self.m.setdefault(key, np.zeros_like(params[key]))
            v = self.v.setdefault(key, np.zeros_like(params[key]))
            m *= beta1
            m += (1.0 - beta1) * grad
            v *= beta2
            v += (1.0 - beta2) * grad * grad
            params[key] -= step_size * m / (np.sqrt(v) / correction2_sqrt + self.eps)


# --------------------------------------------------------------------------------------------------
# A tiny trainable model
# --------------------------------------------------------------------------------------------------


class NumpyLSTMRegressor:
    """An LSTM read out by a linear head on its last hidden state: ``ŷ = W_head h_T + b_head``.

    ``params`` holds the LSTM's four arrays (:func:`init_params`) plus ``head_weight (O, H)`` and
    ``head_bias (O,)``, drawn like ``torch.nn.Linear``'s, U(−1/√H, 1/√H). It is a plain dict, so an
    optimiser's ``step(model.params, grads)`` trains the model in place.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, seed: int = 0) -> None:
        check_int("NumpyLSTMRegressor", "output_size", output_size)
        self.params: Params = init_params(input_size, hidden_size, seed=seed)
        rng = np.random.default_rng([seed, 1])  # a stream of its own, independent of the LSTM's
        bound = 1.0 / math.sqrt(hidden_size)
        self.params["head_weight"] = rng.uniform(-bound, bound, size=(output_size, hidden_size))
        self.params["head_bias"] = rng.uniform(-bound, bound, size=(output_size,))
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, output_size

    def __repr__(self) -> str:
        return (
            f"NumpyLSTMRegressor(input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"output_size={self.output_size})"
        )

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, LSTMCache]:
        _, (h_T, _), cache = lstm_forward(self.params, x)
        return h_T @ self.params["head_weight"].T + self.params["head_bias"], h_T, cache

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions ``(N, O)`` for inputs ``x (T, N, I)``, from zero initial state."""
        return self._forward(x)[0]

    def loss_and_grads(
        self, x: np.ndarray, y: np.ndarray, truncate: Optional[int] = None
    ) -> tuple[float, Params]:
        """Mean squared error and its gradient on every parameter.

        Args:
            x: inputs ``(T, N, I)``.
            y: targets ``(N, O)``.
            truncate: passed to :func:`lstm_backward`. The only loss is at the last step, so
                ``truncate=k`` means the error reaches the last ``k`` inputs only.

        Returns:
            ``loss = mean((ŷ − y)²)`` over all ``N · O`` entries (``torch.nn.MSELoss()``'s), and
            ``grads``, with the same keys and shapes as ``params``.
        """
        prediction, h_T, cache = self._forward(x)
        y = np.asarray(y)
        _check_shape("NumpyLSTMRegressor.loss_and_grads", "y", y, "(N, O)", prediction.shape)
        error = prediction - y
        loss = float(np.mean(error**2))
        d_prediction = 2.0 * error / error.size  # (N, O)
        grads = {
            "head_weight": d_prediction.T @ h_T,
            "head_bias": d_prediction.sum(axis=0),
        }
        # The head reads h_T only, so the LSTM receives its gradient through dh_T and no dhs.
        dh_T = d_prediction @ self.params["head_weight"]
        lstm_grads, _, _, _ = lstm_backward(self.params, cache, None, dh_T=dh_T, truncate=truncate)
        grads.update(lstm_grads)
        return loss, grads


# --------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------


def _check_shape(
    where: str, name: str, array: np.ndarray, layout: str, expected: tuple[Optional[int], ...]
) -> None:
    """Raise if ``array.shape`` does not match ``expected`` (``None`` matches any length)."""
    shape = array.shape
    if len(shape) != len(expected) or any(
        e is not None and s != e for s, e in zip(shape, expected)
    ):
        wanted = "(" + ", ".join("·" if e is None else str(e) for e in expected) + ")"
        if len(expected) == 1:
            wanted = wanted[:-1] + ",)"
        got = f"got shape {shape}"
        raise ValueError(f"{where}: expected {name} of shape {layout} = {wanted}, {got}")


def _check_params(params: Mapping[str, np.ndarray], where: str) -> tuple[int, int]:
    """Check the LSTM entries of ``params`` and return ``(H, I)``."""
    for key in ("weight_ih", "weight_hh"):
        if key not in params:
            raise KeyError(f"{where}: expected params with key {key!r}, got keys {sorted(params)}")
    w_ih, w_hh = np.shape(params["weight_ih"]), np.shape(params["weight_hh"])
    if len(w_hh) != 2 or w_hh[0] != 4 * w_hh[1]:
        raise ValueError(f"{where}: expected weight_hh of shape (4H, H), got shape {w_hh}")
    hidden = w_hh[1]
    if len(w_ih) != 2 or w_ih[0] != 4 * hidden:
        raise ValueError(
            f"{where}: expected weight_ih of shape (4H, I) = ({4 * hidden}, ·), got shape {w_ih}"
        )
    has_bias = ["bias_ih" in params, "bias_hh" in params]
    if any(has_bias) and not all(has_bias):
        raise KeyError(
            f"{where}: expected both bias_ih and bias_hh or neither, got keys {sorted(params)}"
        )
    if all(has_bias):
        for key in ("bias_ih", "bias_hh"):
            if np.shape(params[key]) != (4 * hidden,):
                raise ValueError(
                    f"{where}: expected {key} of shape (4H,) = ({4 * hidden},), got shape "
                    f"{np.shape(params[key])}"
                )
    return hidden, w_ih[1]


def _state_or_zeros(
    where: str, name: str, state: Optional[np.ndarray], shape: tuple[int, int], dtype: Any
) -> np.ndarray:
    if state is None:
        return np.zeros(shape, dtype=dtype)
    state = np.asarray(state)
    _check_shape(where, name, state, "(N, H)", shape)
    return state
