"""A character n-gram model: the count-based baseline every language model must beat.

Before a recurrent network earns its keep on text it has to beat counting. An n-gram model
predicts the next character from the previous n - 1 by their relative frequency in the training
text, with add-k smoothing so that an unseen continuation keeps some probability:

    P(x_t = c | context) = (count(context, c) + k) / (count(context) + k V)        (add-k)

where V is the vocabulary size. ``k`` is chosen on held-out text (:meth:`NGram.choose_k`), never
on the text it is scored on. Where fewer than n - 1 characters precede a position (the start of a
window a network reads from a zero state), the model uses as many as there are: the context is
cut where the network's is.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["NGram"]


class NGram:
    """Counts of every order from 1 to ``n`` over a text of integer ids.

    Args:
        n: the order (1: unigram, 2: bigram, ...), at least 1.
        vocab_size: V, the number of possible ids (ids are ``0 .. V-1``).
        k: the add-k smoothing constant (> 0).
    """

    def __init__(self, n: int, vocab_size: int, k: float = 0.1) -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"NGram: expected an order n >= 1, got {n!r}")
        if not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"NGram: expected vocab_size >= 1, got {vocab_size!r}")
        if not k > 0:
            raise ValueError(f"NGram: expected a smoothing constant k > 0, got {k!r}")
        self.n, self.vocab_size, self.k = n, vocab_size, float(k)
        self.counts: Counter[tuple[int, ...]] = Counter()  # (context..., next) -> count
        self.context_counts: Counter[tuple[int, ...]] = Counter()  # context -> count

    def fit(self, ids: Tensor | Sequence[int]) -> NGram:
        """Count every m-gram (m = 1..n) of ``ids`` ``(T,)``; returns self."""
        ids = [int(i) for i in torch.as_tensor(ids).flatten().tolist()]
        if ids and not 0 <= min(ids) <= max(ids) < self.vocab_size:
            raise ValueError(
                f"NGram.fit: expected ids in [0, {self.vocab_size}), got {min(ids)}..{max(ids)}"
            )
        for m in range(1, self.n + 1):
            grams = list(zip(*(ids[j:] for j in range(m))))
            self.counts.update(grams)
            self.context_counts.update(g[:-1] for g in grams)
        return self

    def log_prob(self, context: Sequence[int], token: int) -> float:
        """log P(token | the last n - 1 ids of ``context``), add-k smoothed, in nats."""
        context = tuple(context[len(context) - (self.n - 1) :]) if self.n > 1 else ()
        seen = self.context_counts[context]
        hits = self.counts[(*context, token)]
        return math.log((hits + self.k) / (seen + self.k * self.vocab_size))

    def nats(self, windows: Tensor) -> float:
        """Mean cross-entropy, in nats per character, of predicting ``windows[:, 1:]``.

        ``windows`` is ``(W, L + 1)`` ids; the prediction of position j + 1 sees positions 0..j
        of its own window only (a network read from a zero state sees the same).
        """
        if windows.ndim != 2 or windows.shape[1] < 2:
            raise ValueError(
                f"NGram.nats: expected windows (W, L + 1) with L >= 1, got {tuple(windows.shape)}"
            )
        total, count = 0.0, 0
        for row in windows.tolist():
            for j in range(1, len(row)):
                total -= self.log_prob(row[:j], row[j])
                count += 1
        return total / count

    def choose_k(self, held_out: Tensor, grid: Sequence[float]) -> dict[float, float]:
        """Set ``k`` to the value of ``grid`` with the lowest nats on ``held_out`` windows
        ``(W, L + 1)``; returns every value's nats."""
        scores = {}
        for k in grid:
            self.k = float(k)
            scores[float(k)] = self.nats(held_out)
        self.k = min(scores, key=scores.get)
        return scores
