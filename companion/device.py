"""Where tensors live (and where a model's do), and how to make a run repeat.

Every chapter starts with ``device = pick_device()`` and ``seed_everything(0)``. The same notebook
then runs on a laptop CPU, a CUDA GPU (Colab) or Apple's MPS without edits: code in the book and in
``companion`` creates tensors on ``device`` (or on the device of a tensor it was given), never on a
hard-coded one.
"""

from __future__ import annotations

import os
import platform
import random

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from companion._checks import check_int

__all__ = [
    "DEVICE_ENV_VAR",
    "pick_device",
    "seed_everything",
    "environment_summary",
    "model_device",
    "unwrap",
]

#: Environment variable that overrides the automatic choice, e.g. ``COMPANION_DEVICE=cpu``.
DEVICE_ENV_VAR = "COMPANION_DEVICE"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """Choose the device to run on.

    The order of precedence is: the ``prefer`` argument, then the ``COMPANION_DEVICE`` environment
    variable, then the best available backend (``cuda``, then ``mps``, then ``cpu``).

    Args:
        prefer: a device such as ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"``, in any case;
            ``None`` or ``"auto"`` means "pick for me".

    Returns:
        The chosen ``torch.device``.

    Raises:
        ValueError: if the string is not a device name torch understands.
        RuntimeError: if the requested backend is not available on this machine, so a typo in an
            override fails loudly instead of silently running on the CPU.
    """
    requested = prefer if prefer is not None else os.environ.get(DEVICE_ENV_VAR) or None
    # One rule for case: "CPU", "Cuda:0", "MPS" and "Auto" mean what their lower case means.
    name = None if requested is None else str(requested).strip().lower()
    if name is None or name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")

    source = "argument" if prefer is not None else f"environment variable {DEVICE_ENV_VAR}"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(
            f"pick_device: expected a device such as 'cpu', 'cuda', 'cuda:0' or 'mps' "
            f"(from the {source}), got {requested!r}"
        ) from err

    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"pick_device: 'cuda' was requested (from the {source}) but this torch "
                f"({torch.__version__}) sees no CUDA GPU; use 'cpu' or leave it to 'auto'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"pick_device: expected a CUDA index below {torch.cuda.device_count()}, "
                f"got {device} (from the {source})"
            )
    elif device.type == "mps" and not _mps_available():
        raise RuntimeError(
            f"pick_device: 'mps' was requested (from the {source}) but MPS is not available here"
        )
    elif device.type not in {"cpu", "cuda", "mps"}:
        raise ValueError(
            f"pick_device: expected one of 'cpu', 'cuda', 'mps' (from the {source}), "
            f"got {device.type!r}"
        )
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (all CUDA devices included).

    This makes a CPU run repeat exactly. GPU kernels may still differ in the last bits between
    runs, which is why the book's asserted claims have margins rather than exact values.
    """
    seed = check_int("seed_everything", "seed", seed, minimum=-(2**63))
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def device_name(device: str | torch.device) -> str:
    """A human-readable name for ``device``: the GPU model for CUDA, the processor otherwise."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return platform.processor() or platform.machine() or "CPU"


def environment_summary(device: str | torch.device | None = None) -> str:
    """One line naming the torch version, the device and what it is, e.g.
    ``torch 2.13.0 | device cpu (x86_64) | 2 CPU threads``."""
    device = pick_device(device)
    parts = [f"torch {torch.__version__.split('+')[0]}", f"device {device} ({device_name(device)})"]
    if device.type == "cuda":
        parts.append(f"CUDA {torch.version.cuda}")
    threads = torch.get_num_threads()
    parts.append(f"{threads} CPU thread{'s' if threads != 1 else ''}")
    return " | ".join(parts)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` or ``DataParallel``; ``model`` otherwise."""
    if isinstance(model, (DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for a model with neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")
