"""What every recurrent layer of companion shares, whatever its equations: one path that checks
and lays out its input and its initial state, and its default initialisation.

Every recurrent layer of companion (the ``torch.nn`` twins and their cells in
:mod:`companion.models`, chapter 12's :mod:`companion.minrnn` and :mod:`companion.slstm`, and
:mod:`companion.fused`) sends its input through :func:`time_major` and its initial state through
:func:`check_states`, so that one mistake gets one error everywhere: a :class:`ShapeError` for a
wrong rank, feature size, state shape or an empty sequence; a ``TypeError`` for something that is
not a tensor or not floating point; a ``RuntimeError`` for the wrong device and a ``ValueError``
for the wrong dtype. Messages start with ``where`` (the class name) and say what was expected and
what came.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from companion._autocast import autocast_on

__all__ = [
    "ShapeError",
    "batch_major",
    "cell_input",
    "check_input",
    "check_like",
    "check_states",
    "reset_uniform",
    "time_major",
]

#: A recurrent state: ``(h,)``, ``(h, c)`` for the LSTM, ``(h, c, n, m)`` for the sLSTM.
State = tuple[Tensor, ...]


class ShapeError(ValueError, RuntimeError):
    """A tensor of the wrong shape: the wrong rank, feature size, batch size, number of layers
    in ``hx``, or an empty sequence.

    It is both a ``ValueError`` (what a bad argument is in Python) and a ``RuntimeError`` (what
    ``torch.nn`` raises for the same mistakes), so code written for either catches it.
    """


# Documented, and shown in tracebacks, where the layers are: companion.models.ShapeError.
ShapeError.__module__ = "companion.models"


def check_input(
    where: str, x: Tensor, layouts: dict[int, str], input_size: int, weight: Tensor
) -> None:
    """Rank (one of ``layouts``: rank -> layout), dtype, device and feature size of an input."""
    if x.dim() not in layouts:
        (rank, layout), *others = layouts.items()
        wanted = " or ".join([f"{rank} dimensions {layout}"] + [f"{r} {lay}" for r, lay in others])
        raise ShapeError(f"{where}: expected input with {wanted}, got shape {tuple(x.shape)}")
    check_like(where, "input", x, weight, "the weights'", model_can_move=True)
    if x.size(-1) != input_size:
        raise ShapeError(
            f"{where}: expected input with input_size={input_size} features in its last "
            f"dimension, got shape {tuple(x.shape)}"
        )


def time_major(
    where: str, input: Any, batch_first: bool, input_size: int, weight: Tensor
) -> tuple[Tensor, bool]:
    """Check a layer's input and return it time-major, (T, N, H_in), and whether it was batched.

    The one path every layer's input goes through: a tensor, rank 3 ((T, N, H_in), or
    (N, T, H_in) if ``batch_first``) or 2 (unbatched (T, H_in)), floating point, on the weights'
    device and dtype, ``input_size`` features and at least one step.
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"{where}: expected input to be a Tensor, got {type(input).__name__}")
    layout = "(N, L, H_in)" if batch_first else "(L, N, H_in)"
    check_input(where, input, {3: layout, 2: "(L, H_in)"}, input_size, weight)
    is_batched = input.dim() == 3
    if not is_batched:
        x = input.unsqueeze(1)
    else:
        x = input.transpose(0, 1) if batch_first else input
    if x.size(0) == 0:
        raise ShapeError(
            f"{where}: expected a sequence length of at least 1, got shape {tuple(input.shape)}"
        )
    return x, is_batched


def check_like(
    where: str, what: str, x: Tensor, reference: Tensor, whose: str, model_can_move: bool = False
) -> None:
    """``x`` must be floating point, and on ``reference``'s device and in its dtype (any floating
    dtype under autocast, which casts them, as torch.nn allows).

    ``model_can_move`` says whether the reference is the model's weights, so that converting the
    model instead is a fix worth suggesting (it is not when the reference is the input)."""
    if not x.is_floating_point():
        raise TypeError(
            f"{where}: expected {what} to be a floating-point tensor, got dtype {x.dtype}"
        )
    if x.device != reference.device:
        raise RuntimeError(
            f"{where}: expected {what} on {whose} device {reference.device}, got {what} on "
            f"{x.device}; move one of them with .to(...)"
        )
    if x.dtype != reference.dtype and not autocast_on(x.device.type):
        fix = f"convert it with .to({reference.dtype})"
        if model_can_move:
            fix += f" or the model with .to({x.dtype})"
        raise ValueError(
            f"{where}: expected {what} in {whose} dtype {reference.dtype}, got {x.dtype}; {fix}"
        )


def batch_major(output: Tensor, is_batched: bool, batch_first: bool) -> Tensor:
    """A time-major output (T, N, ·) laid out as the input that :func:`time_major` took: (T, ·)
    if it was unbatched, (N, T, ·) if ``batch_first``."""
    if not is_batched:
        return output.squeeze(1)
    return output.transpose(0, 1) if batch_first else output


def check_states(
    where: str,
    state: Any,
    names: tuple[str, ...],
    expected: tuple[int, ...],
    layout: str,
    input: Tensor,
    arg: str = "hx",
) -> State:
    """The user's initial state, checked, as a tuple with one tensor per name in ``names``.

    With one name, ``state`` is that tensor; with several (the LSTM's ``(h_0, c_0)``, the
    sLSTM's ``(h, c, n, m)``) a tuple or list of them. Each must have the shape ``expected``
    (``layout`` says it in symbols, e.g. ``"(num_layers, N, H)"``), be floating point, and lie
    on the input's device in its dtype. ``arg`` is the argument's name in messages.
    """
    if len(names) > 1:
        if not isinstance(state, (tuple, list)) or len(state) != len(names):
            got = type(state).__name__
            if isinstance(state, (tuple, list)):
                got += f" of length {len(state)}"
            raise TypeError(
                f"{where}: expected {arg} to be a tuple ({', '.join(names)}), got {got}"
            )
        states = tuple(state)
    else:
        states = (state,)
    for name, s in zip(names, states):
        if not isinstance(s, Tensor):
            raise TypeError(f"{where}: expected {name} to be a Tensor, got {type(s).__name__}")
        if tuple(s.shape) != expected:
            raise ShapeError(
                f"{where}: expected {name} of shape {expected} {layout}, got shape {tuple(s.shape)}"
            )
        check_like(where, name, s, input, "the input's")
    return states


def cell_input(where: str, input: Any, input_size: int, weight: Tensor) -> tuple[Tensor, bool]:
    """Check a cell's input, (N, H_in) or unbatched (H_in,), and return it batched (N, H_in),
    and whether it was. The cells' counterpart of :func:`time_major`."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{where}: expected input to be a Tensor, got {type(input).__name__}")
    check_input(where, input, {2: "(N, H_in)", 1: "(H_in,)"}, input_size, weight)
    is_batched = input.dim() == 2
    return (input if is_batched else input.unsqueeze(0)), is_batched


def reset_uniform(module: nn.Module, hidden_size: int) -> None:
    """Every parameter of ``module`` uniform in [-1/√H, 1/√H], drawn in registration order:
    torch.nn's initialisation of its recurrent layers, so that one seed gives the same weights
    to a twin and its torch.nn original. H = 0 (an empty cell, as torch.nn allows) gives zeros."""
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    for weight in module.parameters():
        nn.init.uniform_(weight, -bound, bound)
