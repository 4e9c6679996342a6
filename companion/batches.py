"""How a batch reaches a model: the batch protocol of :func:`companion.train.fit`, ``evaluate``
and ``predict``, and the two helpers every stateful loop needs, :func:`to_device` and
:func:`detach_state`.

Batches
-------
``train_data`` / ``val_data`` are any *re-iterable* of batches (a ``DataLoader``, a list). A batch
is a tuple or list whose **last element is the target** ``y`` and whose other elements are the
model's inputs:

- ``(x, y)`` calls ``model(x)``;
- ``(padded, lengths, y)`` or ``((padded, lengths), y)`` calls ``model(padded, lengths)``.

A single batch of tensors such as ``(x, y)`` may be passed instead of an iterable (full-batch
training, as chapter 7 does with L-BFGS). Every tensor of a batch is moved to the device with
:func:`to_device`, lengths included: ``pack_padded_sequence`` wants its lengths on the CPU, so a
model that receives lengths calls ``lengths.cpu()`` itself (cheap: they are ``N`` integers).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Union

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from companion._checks import describe

__all__ = ["to_device", "detach_state", "as_batches", "split_batch", "batch_size"]

DeviceLike = Union[str, torch.device, None]


def to_device(obj: Any, device: DeviceLike) -> Any:
    """Move every tensor inside ``obj`` (a tensor, ``PackedSequence``, or a tuple, list or dict
    nesting them) to ``device``; anything else is returned unchanged.

    All tensors move, lengths included; see the module docstring for packed sequences.
    """
    device = torch.device(device) if device is not None else None
    if device is None:
        return obj
    if isinstance(obj, Tensor):
        # non_blocking only host -> GPU: a GPU -> host copy must finish before the CPU reads it.
        return obj.to(device, non_blocking=device.type == "cuda" and obj.device.type == "cpu")
    if isinstance(obj, PackedSequence):
        return obj.to(device)  # keeps batch_sizes on the CPU, as torch requires
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(to_device(o, device) for o in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def detach_state(state: Any) -> Any:
    """Cut the autograd history of a recurrent state, keeping its values.

    Truncated BPTT carries the last state of one chunk into the next; detaching it stops the
    backward pass at the chunk boundary instead of running back to the start of the sequence.

    Args:
        state: ``None``, a tensor such as ``h`` of shape ``(num_layers, N, H)``, or a tuple, list
            or dict of them such as an LSTM's ``(h, c)``.

    Returns:
        The same structure with every tensor detached (``None`` stays ``None``).
    """
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(detach_state(s) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    raise TypeError(
        f"detach_state: expected a tensor, a tuple/list/dict of tensors or None, "
        f"got {type(state).__name__}"
    )


def as_batches(data: Any, where: str, name: str, epochs: int = 1) -> Iterable[Any]:
    """``data`` as a re-iterable of batches: a single batch of tensors becomes a list of one;
    an iterator, which one pass would exhaust, is refused when ``epochs > 1``."""
    if data is None:
        raise TypeError(f"{where}: expected {name} to be an iterable of (x, y) batches, got None")
    # A tuple/list of tensors cannot be a list of batches (a batch is a pair), so it is one batch.
    if (
        isinstance(data, (tuple, list))
        and len(data) >= 2
        and all(isinstance(d, Tensor) for d in data)
    ):
        return [data]
    if isinstance(data, Tensor):
        raise TypeError(
            f"{where}: expected {name} to be (x, y) or an iterable of (x, y) batches, "
            f"got {describe(data)} (where is the target?)"
        )
    if not isinstance(data, Iterable):
        raise TypeError(
            f"{where}: expected {name} to be an iterable of (x, y) batches, got {describe(data)}"
        )
    if epochs > 1 and isinstance(data, Iterator):
        raise TypeError(
            f"{where}: expected {name} to be re-iterable (a list or DataLoader), got "
            f"an iterator ({type(data).__name__}), which the first epoch would exhaust"
        )
    return data


def split_batch(batch: Any, where: str) -> tuple[tuple[Any, ...], Any]:
    """``(x1, ..., xk, y)`` -> ``((x1, ..., xk), y)``; ``((x1, ..., xk), y)`` likewise."""
    if not isinstance(batch, (tuple, list)) or isinstance(batch, PackedSequence) or len(batch) < 2:
        raise TypeError(
            f"{where}: expected each batch to be (x, y) or (x1, ..., xk, y), got {describe(batch)}"
        )
    *inputs, target = batch
    if (
        len(inputs) == 1
        and isinstance(inputs[0], (tuple, list))
        and not isinstance(inputs[0], PackedSequence)
    ):
        inputs = list(inputs[0])
    return tuple(inputs), target


def batch_size(y: Any) -> int:
    """Number of samples in a target, to weight per-batch means: its first dimension."""
    if isinstance(y, PackedSequence):
        return int(y.batch_sizes[0])
    if isinstance(y, Tensor):
        return int(y.shape[0]) if y.ndim > 0 else 1
    if isinstance(y, (tuple, list)) and y:
        return batch_size(y[0])
    return 1
