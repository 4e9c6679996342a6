"""Mixed precision in one place: what autocast is doing, across torch versions, and what
:func:`companion.train.fit` switches on for ``amp=True``.

The layers ask :func:`autocast_on` so that, under autocast, they accept and return the dtypes
torch.nn's fused kernels do (:func:`autocast_states`); the training loop asks :func:`amp_setup`
for the autocast dtype and the gradient scaler. The version shims (torch < 2.4 had one query per
device type) live here and nowhere else.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch
from torch import Tensor

__all__ = ["autocast_on", "autocast_states", "grad_scaler", "amp_setup", "autocast"]

#: A recurrent state: ``(h,)``, or ``(h, c)`` for the LSTM; each (N, H).
State = tuple[Tensor, ...]


def autocast_on(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` ("cpu", "cuda", ...); False for a device type
    that has none."""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device type without autocast, such as "meta"
        return False
    except TypeError:  # torch < 2.4: one query per device type
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return device_type == "cuda" and torch.is_autocast_enabled()


def autocast_states(x: Tensor, states: State) -> State:
    """Under autocast, the states in its dtype, as torch.nn's fused kernels cast them: the
    recurrence then runs, and returns, in bfloat16 (or float16) like theirs."""
    if not autocast_on(x.device.type):
        return states
    try:
        dtype = torch.get_autocast_dtype(x.device.type)
    except AttributeError:  # torch < 2.4
        dtype = torch.get_autocast_cpu_dtype() if x.device.type == "cpu" else torch.float16
    return tuple(s.to(dtype) for s in states)


def grad_scaler() -> Any:
    """A CUDA ``GradScaler`` from wherever this torch keeps it."""
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()  # pragma: no cover - old torch


def amp_setup(
    amp: bool | torch.dtype, device: torch.device, use_closure: bool
) -> tuple[torch.dtype | None, Any]:
    """The autocast dtype (``None``: float32) and the ``GradScaler`` (float16 only) for ``amp``."""
    if amp is False or amp is None:
        return None, None
    if amp is True:
        dtype = None
    elif amp in (torch.float16, torch.bfloat16):
        dtype = amp
    else:
        raise TypeError(
            f"fit: expected amp to be True, False, torch.bfloat16 or torch.float16, got {amp!r}"
        )
    if device.type != "cuda":
        # CPU autocast to bfloat16 exists, but it is slow for recurrent layers on most CPUs and
        # changes the numbers the book prints; float32 keeps CPU runs exact and comparable.
        warnings.warn(
            f"fit: amp=True has an effect on CUDA only; training in float32 on {device}",
            UserWarning,
            stacklevel=3,
        )
        return None, None
    if use_closure:
        # L-BFGS line searches compare losses to a few digits: low precision breaks them.
        warnings.warn(
            "fit: amp is not used with closure optimizers such as L-BFGS; training in float32",
            UserWarning,
            stacklevel=3,
        )
        return None, None
    if dtype is None:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # bfloat16 has float32's exponent range, so only float16 needs loss scaling.
    return dtype, (grad_scaler() if dtype == torch.float16 else None)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
