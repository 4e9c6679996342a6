"""Checkpoints that resume a run exactly and refuse to load anything they cannot vouch for.

>>> path = save_checkpoint("lstm.pt", model, opt, history, scheduler=sched)  # doctest: +SKIP
>>> saved = load_checkpoint(path, model, opt, scheduler=sched, restore_rng=True)  # doctest: +SKIP
>>> history = fit(model, ..., history=saved["history"])  # doctest: +SKIP

A checkpoint holds the model's and the optimizer's state, the scheduler's state, the history, a
JSON-like config, and the states of every random number generator that training draws from
(torch's, CUDA's where present, NumPy's and Python's): a shuffling ``DataLoader`` and dropout then
continue exactly where they stopped, and a resumed run ends with the same weights, bit for bit on
the CPU, as one that never stopped.

File format
-----------
``torch.save`` of ``{"format": FORMAT, "sha256": ..., "payload": uint8 tensor, "config": ...}``,
where the payload is the ``torch.save`` of the checkpoint dict and ``sha256`` its digest. The config
also lies outside the payload, so that ``torch.load(path, weights_only=True)["config"]`` reads the
settings needed to rebuild a model before there is one; :func:`load_checkpoint` checks that it
equals the one inside. Both layers are read with
``torch.load(weights_only=True)``, which never runs code from the file; a flipped byte changes the
digest and the file is refused rather than loaded. Nothing touches the model before the whole
checkpoint has been read and checked against it.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import io
import os
import random
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor, nn

from companion import __version__
from companion.device import model_device, unwrap
from companion.history import History

__all__ = ["FORMAT", "CheckpointError", "save_checkpoint", "load_checkpoint"]

#: The ``format`` tag of the files :func:`save_checkpoint` writes.
FORMAT = "companion-checkpoint-2"

PathLike = Union[str, "os.PathLike[str]"]
MapLocation = Union[str, torch.device, Callable, dict, None]


class CheckpointError(ValueError):
    """A file that is corrupt, truncated, altered, or not a checkpoint at all."""


# --------------------------------------------------------------------------------------------------
# Random number generators
# --------------------------------------------------------------------------------------------------


def _rng_states() -> dict[str, Any]:
    """Every generator training draws from, as tensors and plain data ``weights_only`` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        # The uint32 key as int32 bits: the same bytes, in a dtype torch stores.
        "numpy": [kind, torch.from_numpy(keys.view(np.int32).copy()), pos, has_gauss, gauss],
        "python": [version, list(internal), gauss_next],
    }


def _set_rng_states(states: Mapping[str, Any]) -> None:
    torch.set_rng_state(states["torch"].cpu())
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().view(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


# --------------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------------


def _check_json_like(value: Any, where: str) -> None:
    """Raise unless ``value`` is built from dict (str keys), list, tuple, str, int, float, bool,
    None: what both ``json`` and ``torch.load(weights_only=True)`` accept."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json_like(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"save_checkpoint: expected str keys in {where}, "
                    f"got {type(key).__name__} key {key!r}"
                )
            _check_json_like(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"save_checkpoint: expected {where} to be JSON-like (dict, list, str, int, float, bool, "
        f"None), got {type(value).__name__}; convert it first (e.g. float(x), str(x))"
    )


def _serialize(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_checkpoint(
    path: PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    history: History | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    scheduler: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write model, optimizer, scheduler, history, config and RNG states to ``path``, atomically.

    The checkpoint dict holds ``model`` (state dict), ``optimizer`` and ``scheduler`` (state
    dicts or None), ``history`` (``history.to_dict()`` or None), ``config``, ``rng`` (the states
    of torch's, CUDA's, NumPy's and Python's generators) and ``companion_version``. It is written
    with its SHA-256 (see the module docstring) to a temporary file in the same directory and then
    renamed over ``path``, so an interrupted or failed save leaves the previous checkpoint intact.
    A failed save removes its temporary file; one left by a killed process is removed by the
    next save of the same path. A full disk raises ``OSError`` with ``errno.ENOSPC`` whose
    message says "no space left on device" and names ``path``. The file is serialised in memory
    before it is written, so saving needs about twice the checkpoint's size in RAM.

    Args:
        path: where to write; parent folders are created.
        model, optimizer, history: what to save; ``optimizer`` and ``history`` may be None.
        config: JSON-like settings (dicts, lists, str, int, float, bool, None) such as the
            hyperparameters needed to rebuild the model; anything else raises ``TypeError``
            before anything is written.
        scheduler: a learning-rate scheduler whose ``state_dict()`` to save.
        extra: JSON-like facts about the run that are not the model's config, such as the world
            size and global batch :mod:`companion.distributed` records; returned by
            :func:`load_checkpoint` as ``"extra"``.

    A model wrapped in ``DistributedDataParallel`` is saved unwrapped, so that it loads into a
    plain model.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    for name, value in (("config", config), ("extra", extra)):
        if value is not None:
            _check_json_like(value, name)
    payload = _serialize(
        {
            "model": unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "history": history.to_dict() if history is not None else None,
            "config": config,
            "extra": extra,
            "rng": _rng_states(),
            "companion_version": __version__,
        }
    )
    envelope = {
        "format": FORMAT,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),
        "config": config,
    }
    # Serialised in memory first: torch.save writing to a full disk reports "unexpected pos"
    # from its zip writer and hides the OSError; a plain write raises ENOSPC itself.
    data = _serialize(envelope)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    _write_atomically(path, data)
    return path


#: A temporary file no process has written to for this long is left over, whoever made it.
STALE_AFTER_S = 3600.0


def _temp_prefix(path: Path) -> str:
    """Temporary files of ``path`` are ``.{name}.{host}.{pid}.{random}.tmp`` beside it."""
    return f".{path.name}.{socket.gethostname()}.{os.getpid()}."


def _remove_stale_temps(path: Path) -> None:
    """Delete the temporary files that a killed save of ``path`` left beside it.

    One is stale when the process that wrote it (named in it) no longer runs on this host, or,
    for other hosts' files and on Windows (where probing a process is not harmless), when it
    has not changed for :data:`STALE_AFTER_S`: a live save keeps writing to its own.
    """
    host = socket.gethostname()
    for temp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        parts = temp.name[len(path.name) + 2 : -len(".tmp")].rsplit(".", 2)
        with contextlib.suppress(FileNotFoundError):  # another save may remove it first
            age = time.time() - temp.stat().st_mtime
            pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
            ours = parts[0] == host and pid is not None and os.name == "posix"
            if (ours and pid != os.getpid() and not _running(pid)) or age > STALE_AFTER_S:
                temp.unlink()


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists on this (POSIX) host."""
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, sync it and rename it over ``path``:
    ``path`` holds either the old file or the new one, never a part. A full disk raises
    ``OSError`` (``errno.ENOSPC``) that says so and names the path; nothing is left behind."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())  # the data must be on disk before the rename makes it current
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            kept = "the previous checkpoint there is unchanged" if path.exists() else "no file"
            raise OSError(
                err.errno,
                f"save_checkpoint: no space left on device writing {path} ({len(data):,} "
                f"bytes; {kept}); free some space or save elsewhere",
                str(path),
            ) from err
        raise


# --------------------------------------------------------------------------------------------------
# Loading: read everything, check everything, then restore
# --------------------------------------------------------------------------------------------------


def _read(path: Path, map_location: MapLocation) -> dict[str, Any]:
    """The checkpoint dict in ``path``, its digest checked; :class:`CheckpointError` otherwise."""
    where = f"load_checkpoint: {path} is corrupt or not a checkpoint"
    if not path.is_file():
        raise FileNotFoundError(f"load_checkpoint: no file {path}")
    try:
        envelope = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{where} ({type(err).__name__}: {err})") from err
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        got = envelope.get("format") if isinstance(envelope, dict) else type(envelope).__name__
        raise CheckpointError(
            f"{where}: expected a file written by save_checkpoint (format {FORMAT!r}), got {got!r}"
        )
    payload = envelope.get("payload")
    if not isinstance(payload, Tensor) or payload.dtype != torch.uint8:
        raise CheckpointError(f"{where}: it has no payload")
    data = payload.numpy().tobytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != envelope.get("sha256"):
        raise CheckpointError(
            f"{where}: its SHA-256 is {digest}, but it was saved with {envelope.get('sha256')} "
            f"(a damaged or altered file)"
        )
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{where} ({type(err).__name__}: {err})") from err
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CheckpointError(f"{where}: its payload has no model state")
    if envelope.get("config") != checkpoint.get("config"):
        raise CheckpointError(
            f"{where}: the config outside its payload differs from the one inside"
        )
    return checkpoint


def _check_model(path: Path, model: nn.Module, saved: Mapping[str, Any]) -> None:
    """Same keys, same shapes; else a RuntimeError naming every difference."""
    own = model.state_dict()
    problems = []
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    for key in own.keys() & saved.keys():
        ours, theirs = own[key], saved[key]
        if isinstance(ours, Tensor) and isinstance(theirs, Tensor) and ours.shape != theirs.shape:
            problems.append(
                f"{key}: shape {tuple(theirs.shape)} in the file, {tuple(ours.shape)} in the model"
            )
    if problems:
        raise RuntimeError(
            f"load_checkpoint: {path} does not fit this {type(model).__name__} (was it built "
            f"with the same config?): {'; '.join(problems)}"
        )


def _check_optimizer(path: Path, optimizer: torch.optim.Optimizer, saved: Any) -> None:
    """Same number of parameter groups, of the same sizes, and state shaped like the params."""
    if saved is None:
        raise ValueError(
            f"load_checkpoint: expected optimizer state in {path}, got none "
            f"(it was saved without an optimizer)"
        )
    own_groups = optimizer.param_groups
    saved_groups = saved.get("param_groups", []) if isinstance(saved, Mapping) else []
    own_sizes = [len(g["params"]) for g in own_groups]
    saved_sizes = [len(g.get("params", [])) for g in saved_groups]
    if own_sizes != saved_sizes:
        raise ValueError(
            f"load_checkpoint: the optimizer in {path} has parameter groups of sizes "
            f"{saved_sizes}, this {type(optimizer).__name__} has {own_sizes}"
        )
    params = [p for g in own_groups for p in g["params"]]
    saved_ids = [i for g in saved_groups for i in g["params"]]
    for index, param in zip(saved_ids, params):
        for name, value in saved.get("state", {}).get(index, {}).items():
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape != param.shape:
                raise ValueError(
                    f"load_checkpoint: optimizer state {name!r} in {path} has shape "
                    f"{tuple(value.shape)}, its parameter {tuple(param.shape)}"
                )


def load_checkpoint(
    path: PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    map_location: MapLocation = None,
    *,
    scheduler: Any = None,
    restore_rng: bool = False,
    check_extra: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_checkpoint` into ``model`` (and the others).

    The whole file is read, its digest checked, and the model's keys and shapes, the optimizer's
    parameter groups and the scheduler's presence checked, before anything is changed: a
    checkpoint that does not fit leaves model, optimizer and scheduler as they were.

    Args:
        map_location: where to load tensors; default the device of the model's first parameter,
            so a checkpoint saved on a GPU loads on a CPU-only machine.
        scheduler: a scheduler to restore (the checkpoint must hold one).
        restore_rng: also restore the random generators, to resume a run exactly (shuffling,
            dropout). Off by default, since it rewinds every generator of the process.
        check_extra: called with the saved ``extra`` (None if there is none) before anything
            is restored; it raises to refuse the checkpoint.

    A ``DistributedDataParallel`` model is restored through the module it wraps.

    Returns:
        ``{"history": History or None, "config": ..., "companion_version": str or None}``, and
        ``"extra"`` when the file has some.

    Raises:
        FileNotFoundError: if there is no file at ``path``.
        CheckpointError: (a ``ValueError``) if the file is truncated, corrupt, altered (its digest
            differs) or not a checkpoint; the message names the path.
        RuntimeError: if the checkpoint does not fit the model, naming the missing, unexpected
            and mis-shaped keys.
        ValueError: if ``optimizer`` or ``scheduler`` is given but the checkpoint has no state
            for it, or the optimizer's groups differ.
    """

    model = unwrap(model)
    path = Path(path)
    if map_location is None:
        map_location = model_device(model)
    checkpoint = _read(path, map_location)
    _check_model(path, model, checkpoint["model"])
    if optimizer is not None:
        _check_optimizer(path, optimizer, checkpoint.get("optimizer"))
    if scheduler is not None and checkpoint.get("scheduler") is None:
        raise ValueError(f"load_checkpoint: expected scheduler state in {path}, got none")
    if restore_rng and checkpoint.get("rng") is None:
        raise ValueError(f"load_checkpoint: expected RNG states in {path}, got none")
    if check_extra is not None:
        check_extra(checkpoint.get("extra"))
    raw_history = checkpoint.get("history")
    history = History.from_dict(raw_history) if raw_history is not None else None

    model.load_state_dict(checkpoint["model"])
    if optimizer is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    if restore_rng:
        _set_rng_states(checkpoint["rng"])
    result = {
        "history": history,
        "config": checkpoint.get("config"),
        "companion_version": checkpoint.get("companion_version"),
    }
    if checkpoint.get("extra") is not None:
        result["extra"] = checkpoint["extra"]
    return result
