"""Two models scored on the same test examples: is the difference larger than chance?

Seed ranges that do not overlap say that a difference is larger than the training noise; they do
not say whether the test set is large enough to show it. Near 100% accuracy one or two test
examples decide between "0.999" and "1.000". When both models are scored on the same examples,
a paired test uses that pairing:

- :func:`mcnemar` for right/wrong outcomes (a classification, a prediction within a tolerance):
  only the examples on which the two models disagree carry information, and under "no
  difference" each of them is a fair coin (exact binomial test, two-sided).
- :func:`bootstrap_difference` for any per-example score: a percentile interval of the mean
  difference, resampling examples (or blocks of consecutive ones, for a time series).
- :func:`diebold_mariano` for two forecasts of one series (Diebold & Mariano, 1995, with the
  small-sample correction of Harvey, Leybourne & Newbold, 1997): the loss differential's mean
  over its long-run standard error, which allows for the autocorrelation of h-step errors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

__all__ = ["Paired", "bootstrap_difference", "diebold_mariano", "mcnemar"]


class Paired(NamedTuple):
    """A paired comparison of model a against model b.

    Attributes:
        difference: mean of a's score minus b's (McNemar: a's accuracy minus b's).
        low, high: a 95% interval of the difference (McNemar and Diebold-Mariano: NaN).
        p: the two-sided p-value of "no difference" (bootstrap: NaN).
        n: the number of paired examples.
    """

    difference: float
    low: float
    high: float
    p: float
    n: int


def _as_pairs(a: Sequence[float], b: Sequence[float], who: str) -> tuple[torch.Tensor, ...]:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(
            f"{who}: expected two non-empty 1-D sequences of one length (one score per test "
            f"example), got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return a, b


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> Paired:
    """Exact McNemar test: were a and b right on the same test examples by chance alone?

    Args:
        correct_a, correct_b: ``(N,)`` whether each model got each example right.
    """
    a, b = _as_pairs(correct_a, correct_b, "mcnemar")
    only_a, only_b = int(((a > 0) & (b == 0)).sum()), int(((a == 0) & (b > 0)).sum())
    k, n = min(only_a, only_b), only_a + only_b
    # Two-sided exact binomial p-value: twice the smaller tail of Binomial(n, 1/2), at most 1.
    tail = sum(math.comb(n, j) for j in range(k + 1)) / 2.0**n if n else 1.0
    diff = (only_a - only_b) / len(a)
    return Paired(diff, math.nan, math.nan, min(1.0, 2 * tail), len(a))


def bootstrap_difference(
    score_a: Sequence[float],
    score_b: Sequence[float],
    *,
    resamples: int = 10_000,
    block: int = 1,
    seed: int = 0,
) -> Paired:
    """Mean of ``score_a - score_b`` with a 95% percentile bootstrap interval.

    Args:
        score_a, score_b: ``(N,)`` per-example scores of the two models (higher or lower better:
            the sign of the difference says which way it goes).
        resamples: bootstrap resamples.
        block: resample blocks of this many consecutive examples (a moving-block bootstrap,
            for autocorrelated series); 1 resamples single examples.
        seed: the generator's seed, so the interval is the same on every run.
    """
    a, b = _as_pairs(score_a, score_b, "bootstrap_difference")
    d, n = a - b, len(a)
    if not 1 <= block <= n:
        raise ValueError(f"bootstrap_difference: expected 1 <= block <= {n}, got {block}")
    g = torch.Generator().manual_seed(seed)
    blocks = math.ceil(n / block)
    starts = torch.randint(0, n - block + 1, (resamples, blocks), generator=g)
    index = (starts[:, :, None] + torch.arange(block)).reshape(resamples, -1)[:, :n]
    means = d[index].mean(dim=1)
    low, high = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64))
    return Paired(float(d.mean()), float(low), float(high), math.nan, n)


def diebold_mariano(
    loss_a: Sequence[float], loss_b: Sequence[float], *, horizon: int = 1
) -> Paired:
    """Diebold-Mariano test of equal forecast accuracy, with the HLN correction.

    Args:
        loss_a, loss_b: ``(N,)`` each forecast's loss at each forecast origin (e.g. absolute
            errors), in time order.
        horizon: the forecast horizon h; the differential's autocovariances up to lag h - 1
            enter its variance (h-step errors overlap).

    The p-value is two-sided from the normal distribution (scaled by the HLN factor), which is
    close to HLN's Student-t for the sample sizes of the book (N of about 50).
    """
    a, b = _as_pairs(loss_a, loss_b, "diebold_mariano")
    d, n = a - b, len(a)
    if not isinstance(horizon, int) or not 1 <= horizon < n:
        raise ValueError(f"diebold_mariano: expected 1 <= horizon < {n}, got {horizon!r}")
    centred = d - d.mean()
    gamma = [float((centred[k:] * centred[: n - k]).sum()) / n for k in range(horizon)]
    variance = (gamma[0] + 2 * sum(gamma[1:])) / n
    if variance <= 0:
        return Paired(float(d.mean()), math.nan, math.nan, 1.0 if d.mean() == 0 else 0.0, n)
    hln = math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    stat = hln * float(d.mean()) / math.sqrt(variance)
    p = math.erfc(abs(stat) / math.sqrt(2))
    return Paired(float(d.mean()), math.nan, math.nan, p, n)
