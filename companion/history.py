"""What :func:`companion.train.fit` records: one dict per epoch, and the loss curves drawn from
them.

A :class:`History` is plain data: :meth:`History.to_dict` gives dicts, lists and numbers that
``json`` and ``torch.load(weights_only=True)`` both accept, which is how a checkpoint stores it
(:mod:`companion.checkpoints`). It lives apart from the training loop so that the checkpoints can
rebuild it without importing the loop, and the loop can save checkpoints: no import cycle.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from torch import Tensor

from companion._checks import describe

__all__ = ["History"]


class History:
    """What :func:`fit` records, one ``dict`` per epoch.

    Each record has the keys ``epoch`` (1-based), ``train_loss``, ``val_loss`` (when validation
    data was given), ``train_<metric>`` or ``val_<metric>`` for every metric, ``grad_norm`` (mean
    total gradient norm before clipping), ``lr`` and ``time`` (seconds since training started).

    ``history["train_loss"]`` is the list of values over epochs (NaN where a record lacks the key),
    ``history[-1]`` the last record, ``len(history)`` the number of epochs recorded.
    """

    def __init__(
        self, records: Iterable[Mapping[str, Any]] | None = None, interrupted: bool = False
    ) -> None:
        self.records: list[dict[str, Any]] = [dict(r) for r in (records or [])]
        #: True when the last :func:`fit` that wrote to this history was stopped by Ctrl-C.
        self.interrupted: bool = bool(interrupted)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, str):
            if not any(key in r for r in self.records):
                raise KeyError(f"History: no record has the key {key!r}; keys are {self.keys()}")
            return [r.get(key, math.nan) for r in self.records]
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            return self.records[int(key)]  # numpy integers too: the package's one rule
        raise TypeError(
            f"History: expected a key (str) or an epoch position (int), got {type(key).__name__}"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        flag = ", interrupted" if self.interrupted else ""
        return f"History({len(self)} epochs, keys={self.keys()}{flag})"

    def keys(self) -> list[str]:
        """All keys that occur in some record, in first-seen order."""
        seen: dict[str, None] = {}
        for record in self.records:
            seen.update(dict.fromkeys(record))
        return list(seen)

    def append(self, record: Mapping[str, Any]) -> None:
        """Add the record of one epoch."""
        self.records.append(dict(record))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (dicts, lists, str, int, float, bool) that ``torch.load(weights_only=True)``
        and ``json`` both accept."""
        return {
            "records": [{str(k): _plain_number(v, k) for k, v in r.items()} for r in self.records],
            "interrupted": bool(self.interrupted),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping) or not isinstance(data.get("records"), list):
            raise ValueError(
                f"History.from_dict: expected a dict with a 'records' list, got {describe(data)}"
            )
        return cls(data["records"], interrupted=bool(data.get("interrupted", False)))

    def plot(self, ax: Any = None, log: bool = False, label: str | None = None) -> Any:
        """Draw the loss curves with :func:`companion.plots.plot_history`; returns what it returns.

        ``label`` (e.g. ``"LSTM"``) names the model in the legend and gives both curves its colour,
        so several histories can share one Axes."""
        from companion import plots  # lazy: importing matplotlib is slow and training needs none

        return plots.plot_history(self, ax=ax, log=log, label=label)


def _plain_number(value: Any, key: str) -> int | float | str | bool:
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Tensor):
        return value.item()
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"History: expected a number for {key!r}, got {describe(value)}") from err
