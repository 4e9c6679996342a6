"""The argument rules every public function of companion uses: integers, reals and bools, and
how a message describes what came. Plain Python: :mod:`companion.numpy_lstm` uses these rules
and imports no torch.

One rule per kind, so that a value accepted in one place is accepted in all: any integral number
(``int``, ``numpy.int64``, ...) is accepted and returned as a plain ``int``; ``bool`` is refused
(``True`` as a size is a bug, not a request for one), and so are floats, even ``3.0``.
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Any


def check_int(where: str, name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an ``int``, or a ``TypeError``/``ValueError`` that names ``where`` and ``name``.

    Args:
        where: the function or class the message starts with, e.g. ``"LSTM"``.
        name: the argument, e.g. ``"hidden_size"``.
        value: what the caller passed.
        minimum: the smallest value allowed (1 for sizes, 0 for seeds and epochs).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: expected an int {name}, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{where}: expected {name} >= {minimum}, got {value}")
    return value


def check_real(
    where: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    rule: str = "a finite number",
) -> float:
    """``value`` as a finite ``float`` in [low, high] ((low, high] with ``low_open``), or an
    error naming ``where`` and ``name``: a ``TypeError`` for what is not a real number (``bool``
    is refused, as in :func:`check_int`), a ``ValueError`` for NaN, infinities and values out
    of bounds. ``rule`` says what is expected, e.g. ``"a positive number or None"``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        got = f"{type(value).__name__} {value!r}"
        raise TypeError(f"{where}: expected {name} to be {rule}, got {got}")
    number = float(value)
    above = low is None or (number > low if low_open else number >= low)
    if not (math.isfinite(number) and above and (high is None or number <= high)):
        raise ValueError(f"{where}: expected {name} to be {rule}, got {value!r}")
    return number


def describe(obj: Any) -> str:
    """What came, for the "got ..." half of a message: ``"a tensor of shape (3, 4)"``, ``"a
    list of length 2"``, ``"a dict"``. Imports no torch (``numpy_lstm`` uses these rules too)."""
    torch = sys.modules.get("torch")  # if torch is not loaded, obj cannot be a tensor
    if torch is not None and isinstance(obj, torch.Tensor):
        return f"a tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, (tuple, list)):
        return f"a {type(obj).__name__} of length {len(obj)}"
    return f"a {type(obj).__name__}"


def check_bool(where: str, name: str, value: Any, int_ok: bool = False) -> bool:
    """``value`` as a bool; with ``int_ok`` the ints 0 and 1 count as False and True, as
    torch.nn's layers allow for ``bidirectional`` (not for ``bias`` or ``batch_first``)."""
    if isinstance(value, bool):
        return value
    if int_ok and isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{where}: expected {name} to be a bool, got {type(value).__name__} {value!r}")
