"""Gate recording: every gate and state a forward pass computes, kept for looking at.

>>> from companion.models import LSTMCell
>>> model = torch.nn.Sequential(LSTMCell(3, 4))
>>> with record_gates(model) as rec:
...     h, c = model[0](torch.randn(2, 3))
...     h, c = model[0](torch.randn(2, 3), (h, c))
>>> rec["0"]["i"].shape  # (steps, N, H)
torch.Size([2, 2, 4])

A module that can be recorded is a :class:`GateRecorder`: while :func:`record_gates` is active its
``_recording`` is a list, and every call appends one dict from gate name to detached tensor;
outside it is None, and the normal path pays one ``is None`` check per call and per step. The
cells and layers of ``companion.models`` are recorders; this module imports none of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["GateRecord", "GateRecorder", "record_gates"]

#: What :func:`record_gates` yields: qualified module name -> gate name -> detached tensor.
GateRecord = dict[str, dict[str, Tensor]]


class GateRecorder:
    """What :func:`record_gates` needs of a module: a ``_recording`` list (None outside the
    block) that every call appends its gates to, and the axis its calls are joined along."""

    _recording: list[dict[str, Tensor]] | None
    _record_time_dim: int  # the axis of a gate record along which calls are joined

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


@contextmanager
def record_gates(module: nn.Module) -> Iterator[GateRecord]:
    """Record the gates of every companion cell and layer inside ``module`` within the block.

    The record is filled in when the block exits. It maps the qualified name of every companion
    module (``""`` for ``module`` itself, as in ``named_modules()``) to a dict from gate name to
    a detached tensor: LSTM ``i, f, g, o, h, c``; GRU ``r, z, n, h``; RNN ``h``. Shapes:

    - layers: (num_layers·D, T, N, H), time-major even when ``batch_first=True``; N = 1 for
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
    targets = [(name, m) for name, m in module.named_modules() if isinstance(m, GateRecorder)]
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
