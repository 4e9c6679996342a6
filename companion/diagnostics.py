"""Looking inside a recurrent network: gradient flow, spectral radius, gate statistics.

The vanishing-gradient chapter measures how much the loss at the last step still "feels" each
earlier hidden state. :func:`hidden_grad_norms` runs a cell step by step, keeps every h_t in the
graph and returns ‖∂𝓛/∂h_t‖ for each t. For a vanilla RNN in its linear regime,

    ∂𝓛/∂h_t = (W_hh^T)^(T-t) ∂𝓛/∂h_T,

so the curve shrinks or grows geometrically with the distance T - t at a rate set by the
spectral radius of W_hh (:func:`spectral_radius`, :func:`scale_to_spectral_radius`).
:func:`decay_rate` fits that rate to a measured curve, and :func:`gate_statistics` summarises
the gate activations recorded by :func:`companion.models.record_gates`.

Nothing here moves tensors to a hard-coded device: work happens on the device of the input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor, nn

from companion._checks import check_real
from companion.gates import SIGMOID_GATES, STATE_NAMES, TANH_GATES

__all__ = [
    "SIGMOID_GATES",
    "TANH_GATES",
    "STATE_ENTRIES",
    "SATURATION_THRESHOLD",
    "hidden_grad_norms",
    "spectral_radius",
    "scale_to_spectral_radius",
    "decay_rate",
    "gate_statistics",
]

ArrayLike = Union[Tensor, np.ndarray, Sequence[float]]

# SIGMOID_GATES and TANH_GATES come from companion.gates, the one table of gate names.
#: Entries of a gate record that are states, not gates; :func:`gate_statistics` skips them.
STATE_ENTRIES = frozenset(name for names in STATE_NAMES.values() for name in names)
#: A σ gate counts as saturated below 1 - this or above it; a tanh gate when abs(v) exceeds it.
SATURATION_THRESHOLD = 0.9


def hidden_grad_norms(
    cell: nn.Module,
    x: Tensor,
    *,
    h0: Tensor | tuple[Tensor, Tensor] | None = None,
    loss: str | Callable[[Tensor], Tensor] = "last",
) -> Tensor:
    """The vanishing-gradient curve: the norm of ∂𝓛/∂h_t for every step t.

    The cell is called once per step, ``state = cell(x[t], state)``, as one calls
    ``torch.nn.RNNCell``, ``GRUCell`` (which return h) or ``LSTMCell`` (which returns (h, c)), or
    their twins in :mod:`companion.models`. Pass a cell, not a whole layer: a layer hides its
    per-step hidden states inside one fused call.

    Args:
        cell: a recurrent cell with the ``torch.nn`` cell call convention.
        x: inputs, time-major, shape (T, N, I); or (T, I) for one unbatched sequence.
        h0: the initial state as the cell accepts it: (N, H) for RNN/GRU cells, a tuple
            ((N, H), (N, H)) for LSTM cells; ``None`` lets the cell start from zeros.
        loss: ``"last"`` for 𝓛 = Σ h_T (every unit of the last hidden state weighted 1), or a
            callable mapping h_T, shape (N, H), to a scalar tensor.

    Returns:
        A tensor of shape (T,) on the CPU, in the dtype of the hidden states: entry t is the
        batch mean of the L2 norm (over the H units) of ∂𝓛/∂h_t, where h_t is the hidden state
        after reading x[t]. Entry T - 1 is the norm of ∂𝓛/∂h_T itself (√H for ``"last"``).

    The gradient is taken with :func:`torch.autograd.grad` with respect to the hidden states
    only, so the cell's ``.grad`` fields are left untouched, and it works inside
    ``torch.no_grad()`` blocks too.
    """
    _check_sequence(x, loss)
    with torch.enable_grad():
        # x as a leaf that requires grad puts every h_t in the graph even when the cell's
        # parameters are frozen; the gradient with respect to x itself is never computed.
        hs = _hidden_states(cell, x.detach().requires_grad_(True), h0)
        objective = _objective(hs[-1], loss)
        grads = torch.autograd.grad(objective, hs)

    # (T, N, H) -> per-sample norms (T, N) -> batch mean (T,); unbatched (T, H) -> (T,).
    # Squaring float32 entries of 1e-23 underflows to 0, and vanishing gradients get that small
    # within 100 steps, so the norm is taken in float64 (on the CPU: MPS has no float64).
    stacked = torch.stack(grads).detach()
    norms = torch.linalg.vector_norm(stacked.cpu().double(), dim=-1)
    norms = norms.reshape(norms.shape[0], -1).mean(dim=1)
    return norms.to(stacked.dtype)


def _check_sequence(x: Any, loss: Any) -> None:
    """x a floating tensor (T, N, I) or (T, I) with a step at least; loss "last" or callable."""
    if not isinstance(x, Tensor):
        raise TypeError(
            f"hidden_grad_norms: expected x to be a torch.Tensor, got {type(x).__name__}"
        )
    if x.dim() not in (2, 3):
        raise ValueError(
            "hidden_grad_norms: expected x with 3 dimensions (L, N, I) or 2 (L, I), "
            f"got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(
            f"hidden_grad_norms: expected at least one time step, got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"hidden_grad_norms: expected a floating-point x, got dtype {x.dtype}")
    if not (loss == "last" or callable(loss)):
        raise ValueError(
            f"hidden_grad_norms: expected loss='last' or a callable of h_T, got {loss!r}"
        )


def _hidden_states(cell: nn.Module, x: Tensor, h0: Any) -> list[Tensor]:
    """h_t after each x[t], from ``state = cell(x[t], state)`` over the T steps."""
    state, hs = h0, []
    for t in range(x.shape[0]):
        state = cell(x[t], state)
        h = state[0] if isinstance(state, (tuple, list)) else state
        if not isinstance(h, Tensor):
            raise TypeError(
                "hidden_grad_norms: expected the cell to return h or a tuple (h, c) of tensors, "
                f"got {type(h).__name__}"
            )
        hs.append(h)
    return hs


def _objective(h_last: Tensor, loss: str | Callable[[Tensor], Tensor]) -> Tensor:
    """The scalar whose gradient is taken: Σ h_T for "last", else ``loss(h_T)``."""
    objective = h_last.sum() if loss == "last" else loss(h_last)
    if not isinstance(objective, Tensor) or objective.numel() != 1:
        got = tuple(objective.shape) if isinstance(objective, Tensor) else type(objective).__name__
        raise ValueError(f"hidden_grad_norms: expected the loss to be a scalar tensor, got {got}")
    return objective.reshape(())


def _as_square_matrix(W: ArrayLike, where: str) -> Tensor:
    """W as a detached (H, H) tensor, with a clear error when it is not square."""
    if isinstance(W, Tensor):
        M = W.detach()
    elif isinstance(W, np.ndarray):
        M = torch.from_numpy(W)
    else:
        raise TypeError(
            f"{where}: expected a torch.Tensor or numpy.ndarray, got {type(W).__name__}"
        )
    if M.dim() != 2 or M.shape[0] != M.shape[1] or M.shape[0] == 0:
        hint = ""
        if (
            M.dim() == 2
            and M.shape[1] > 0
            and M.shape[0] % M.shape[1] == 0
            and M.shape[0] > M.shape[1]
        ):
            hint = (
                f"; a gated cell's weight_hh stacks {M.shape[0] // M.shape[1]} gate blocks, "
                f"pass one, e.g. weight_hh[:{M.shape[1]}]"
            )
        raise ValueError(
            f"{where}: expected a square matrix (H, H), got shape {tuple(M.shape)}{hint}"
        )
    return M


def spectral_radius(W: ArrayLike) -> float:
    """The largest modulus of the eigenvalues of a square matrix, :math:`\\max_k |\\lambda_k|`.

    Args:
        W: a square matrix (H, H), as a torch.Tensor (any device) or a numpy.ndarray.

    Returns:
        :math:`\\max_k |\\lambda_k(W)|` as a Python float.
    """
    M = _as_square_matrix(W, "spectral_radius")
    # Eigenvalues in float64 on the CPU: eigvals is not implemented on every backend (MPS), and
    # near-defective matrices deserve the extra precision. An (H, H) matrix is cheap to move.
    eig = torch.linalg.eigvals(M.to(device="cpu", dtype=torch.float64))
    return float(eig.abs().max())


def scale_to_spectral_radius(W: ArrayLike, rho: float) -> Tensor | np.ndarray:
    """A copy of W scaled so that its spectral radius is ``rho``.

    Args:
        W: a square matrix (H, H): torch.Tensor (a Parameter works) or numpy.ndarray.
        rho: the target spectral radius, a finite number >= 0.

    Returns:
        ``W * (rho / spectral_radius(W))``, a new (H, H) array of the same kind, dtype and device
        as W (a plain tensor that does not require grad when W is a tensor). Copy it into a
        layer with ``with torch.no_grad(): cell.weight_hh.copy_(scaled)``.

    Raises:
        ValueError: if W is not square, or its spectral radius is 0 (zero or nilpotent matrix),
            which no scale factor can change.
    """
    check_real("scale_to_spectral_radius", "rho", rho, low=0, rule="a finite number >= 0")
    current = spectral_radius(W)
    if current == 0.0:
        raise ValueError(
            "scale_to_spectral_radius: expected a matrix with a nonzero spectral radius, got one "
            "with radius 0 (a zero or nilpotent matrix), which no scale factor can change"
        )
    factor = rho / current
    if isinstance(W, np.ndarray):
        return W * W.dtype.type(factor) if np.issubdtype(W.dtype, np.floating) else W * factor
    return W.detach() * factor


def decay_rate(norms: ArrayLike, start: int | None = None, stop: int | None = None) -> float:
    """The per-step factor by which a gradient-norm curve shrinks going back in time.

    Fits log ‖∂𝓛/∂h_t‖ = a + d · log ρ̂ by least squares, where d = T - 1 - t is the distance of
    step t from the end, and returns ρ̂ = exp(slope). For a curve a · ρ^d it returns ρ exactly.

    - ρ̂ < 1: vanishing gradients (each step further back keeps a fraction ρ̂ of the signal);
    - ρ̂ > 1: exploding gradients;
    - ρ̂ ≈ 1: the signal neither vanishes nor explodes (an LSTM with its forget gates open).

    Args:
        norms: a curve of shape (T,) indexed by t, as returned by :func:`hidden_grad_norms`
            (tensor, array or list), all entries finite and > 0 within the fitted range.
        start, stop: fit only ``norms[start:stop]`` (indices t, Python slice rules), e.g.
            ``stop=-1`` to leave out the last step, whose gradient does not pass a recurrence.

    Returns:
        ρ̂ as a Python float.
    """
    if isinstance(norms, Tensor):
        values = norms.detach().cpu().to(torch.float64).numpy()
    else:
        values = np.asarray(norms, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"decay_rate: expected a 1-D curve (L,), got shape {values.shape}")
    t = np.arange(values.shape[0])[start:stop]
    if t.size < 2:
        raise ValueError(
            f"decay_rate: expected at least 2 points to fit, got {t.size} "
            f"(curve of length {values.shape[0]}, start={start}, stop={stop})"
        )
    selected = values[t]
    bad = np.flatnonzero(~(np.isfinite(selected) & (selected > 0)))
    if bad.size:
        k = int(t[bad[0]])
        raise ValueError(
            f"decay_rate: expected finite norms > 0, got {float(values[k])!r} at t={k}; the "
            "gradient underflowed or overflowed there, fit a shorter range with start=/stop="
        )
    d = (values.shape[0] - 1 - t).astype(np.float64)
    slope = np.polyfit(d, np.log(selected), deg=1)[0]
    return float(np.exp(slope))


def _time_axis(g: Tensor, name: str) -> int:
    if g.dim() == 2:
        return 0  # (T, H)
    if g.dim() >= 3:
        return g.dim() - 3  # (..., T, N, H)
    raise ValueError(
        f"gate_statistics: expected gate {name!r} with shape (L, H), (L, N, H) or (..., L, N, H), "
        f"got shape {tuple(g.shape)}"
    )


def gate_statistics(
    gates: Mapping[str, Tensor], mask: Tensor | None = None
) -> dict[str, dict[str, float]]:
    """Mean, spread and saturation of each gate's activations.

    Args:
        gates: gate name -> activations, e.g. one layer's entry of a
            :func:`companion.models.record_gates` record (``rec[""]``). Each tensor has shape
            (T, H), (T, N, H) or (..., T, N, H) (leading dims such as layers × directions are
            pooled). σ gates ``i, f, o, r, z`` lie in [0, 1], tanh gates ``g, n`` in [-1, 1]; any
            other name is taken to be a σ gate. The states ``h`` and ``c`` are skipped.
        mask: optional boolean tensor selecting time steps: (T,) for all sequences, or (T, N)
            per sequence (for padded batches: ``True`` where the step is real). ``None`` keeps all.

    Returns:
        gate name -> ``{"mean", "std", "saturated_low", "saturated_high", "saturated"}`` as floats,
        over all selected values. ``std`` is the population standard deviation. For a σ gate,
        ``saturated_low`` is the fraction of values < 0.1 (gate shut) and ``saturated_high`` the
        fraction > 0.9 (gate open); for a tanh gate they are the fractions < -0.9 and > 0.9.
        ``saturated`` is their sum. In saturation σ' and tanh' are small, so gradients through the
        gate are weak. A record holding only states (a vanilla RNN's ``h``) gives ``{}``.
    """
    _check_record(gates, mask)
    stats: dict[str, dict[str, float]] = {}
    for name, g in gates.items():
        if isinstance(g, Mapping):
            raise TypeError(
                f"gate_statistics: expected gate name -> Tensor, got a dict under {name!r}; "
                f"pass one layer's record, e.g. rec[{name!r}]"
            )
        if name not in STATE_ENTRIES:
            stats[name] = _summarise(_gate_values(name, g, mask), tanh_gate=name in TANH_GATES)
    return stats


def _check_record(gates: Any, mask: Any) -> None:
    """A non-empty mapping of gates, and a boolean mask (T,) or (T, N) or None."""
    if not isinstance(gates, Mapping):
        raise TypeError(
            f"gate_statistics: expected a dict of gate name -> Tensor, got {type(gates).__name__}"
        )
    if len(gates) == 0:
        raise ValueError(
            "gate_statistics: expected a non-empty dict of gate name -> Tensor, got an empty dict"
        )
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.dim() not in (1, 2):
            what = (
                f"{mask.dtype} tensor of shape {tuple(mask.shape)}"
                if isinstance(mask, Tensor)
                else type(mask).__name__
            )
            raise ValueError(
                f"gate_statistics: expected a boolean mask of shape (L,) or (L, N), got {what}"
            )


def _gate_values(name: str, g: Any, mask: Tensor | None) -> Tensor:
    """The values of gate ``name`` that ``mask`` selects, flat, in float64, checked to lie in
    the gate's range ([0, 1] for σ, [-1, 1] for tanh)."""
    if not isinstance(g, Tensor):
        raise TypeError(
            f"gate_statistics: expected gate {name!r} to be a Tensor, got {type(g).__name__}"
        )
    g = g.detach()
    time_axis = _time_axis(g, name)
    if mask is None:
        values = g.reshape(-1)
    else:
        m = mask.to(g.device)
        T = g.shape[time_axis]
        expected = (T,) if g.dim() == 2 else (T, g.shape[time_axis + 1])
        if m.dim() > len(expected) or tuple(m.shape) != expected[: m.dim()]:
            allowed = f"(L,) = {expected[:1]}"
            if g.dim() > 2:
                allowed += f" or (L, N) = {expected}"
            raise ValueError(
                f"gate_statistics: expected a mask of shape {allowed} for gate {name!r} of shape "
                f"{tuple(g.shape)}, got {tuple(m.shape)}"
            )
        # Trailing singleton dims make (T,) / (T, N) broadcast against (..., T, N, H).
        m = m.reshape(m.shape + (1,) * (g.dim() - time_axis - m.dim()))
        values = g[m.expand_as(g)]
    if values.numel() == 0:
        raise ValueError(f"gate_statistics: the mask selects no values of gate {name!r}")
    values = values.to(torch.float64)
    lo, hi = (-1.0, 1.0) if name in TANH_GATES else (0.0, 1.0)
    tol = 1e-6
    if float(values.min()) < lo - tol or float(values.max()) > hi + tol:
        kind = "tanh" if name in TANH_GATES else "σ"
        raise ValueError(
            f"gate_statistics: expected {kind} gate {name!r} to lie in [{lo:g}, {hi:g}], got "
            f"values in [{float(values.min()):.3g}, {float(values.max()):.3g}]; states belong "
            "under 'h' or 'c'"
        )
    return values


def _summarise(values: Tensor, tanh_gate: bool) -> dict[str, float]:
    """Mean, population std and the saturated fractions of one gate's values."""
    low_cut = -SATURATION_THRESHOLD if tanh_gate else 1.0 - SATURATION_THRESHOLD
    low = float((values < low_cut).to(torch.float64).mean())
    high = float((values > SATURATION_THRESHOLD).to(torch.float64).mean())
    return {
        "mean": float(values.mean()),
        "std": float(values.std(correction=0)),
        "saturated_low": low,
        "saturated_high": high,
        "saturated": low + high,
    }
