"""A timed call, and what its repeats say: samples, quartiles, and verdicts from the spreads.

:func:`timed` reads the wall clock and the timing thread's CPU clock around one call;
:func:`summarize` turns a row's repeats into what a results file stores (every sample, and the
quartiles the loader recomputes); :func:`spread` and :func:`verdict` say what two such rows allow
one to conclude: faster, slower, or too close to call, by their interquartile ranges. Plain
Python: no torch.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from math import floor, log10
from typing import Any

__all__ = [
    "timed",
    "summarize",
    "summaries",
    "round_sig",
    "quartiles",
    "spread",
    "ratio_range",
    "verdict",
]


def timed(fn: Callable[[], Any], sync: Callable[[], None] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this thread) of one call of ``fn``.

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before the clocks start and inside them at
    the end. The CPU clock (``time.thread_time``) starts after the wall clock and stops before
    it, so on one thread the CPU time is at most the wall time; it falls short of it exactly by
    the time the thread waited for a core (or slept).
    """
    if sync is not None:
        sync()
    wall = time.perf_counter()
    cpu = time.thread_time()
    fn()
    if sync is not None:
        sync()
    cpu = time.thread_time() - cpu
    return time.perf_counter() - wall, cpu


def round_sig(value: float, digits: int = 4) -> float:
    """``value`` rounded to ``digits`` significant digits (timings are not worth more)."""
    if value == 0 or value != value or value in (float("inf"), float("-inf")):
        return value
    return round(value, digits - 1 - int(floor(log10(abs(value)))))


def quartiles(ms: Sequence[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile), inclusive method; one sample is all three."""
    if len(ms) == 1:
        return ms[0], ms[0], ms[0]
    q1, q2, q3 = statistics.quantiles(ms, n=4, method="inclusive")
    return q1, q2, q3


def summarize(wall_s: Sequence[float], cpu_s: Sequence[float], scale: float = 1.0) -> dict:
    """The stored form of one row's timed repeats: every sample (milliseconds, 4 significant
    digits, in the order measured) and the summaries the loader recomputes from them.

    Args:
        wall_s: wall seconds per repeat; cpu_s: the timing thread's CPU seconds per repeat.
        scale: what one sample is divided by (e.g. the steps a repeat made, for per-step times).
    """
    if len(wall_s) != len(cpu_s) or not wall_s:
        raise ValueError(
            f"summarize: expected as many CPU as wall samples, at least one; got "
            f"{len(wall_s)} and {len(cpu_s)}"
        )
    times = [round_sig(t * 1e3 / scale) for t in wall_s]
    cpus = [round_sig(c * 1e3 / scale) for c in cpu_s]
    return {"times_ms": times, "cpu_ms": cpus, **summaries(times, cpus)}


def summaries(times: Sequence[float], cpus: Sequence[float]) -> dict:
    """What a row stores besides its samples, from its samples (ms): min_ms, q1_ms, median_ms,
    q3_ms, max_ms (4 significant digits) and cpu_share, CPU over wall time (3 decimals)."""
    q1, median, q3 = quartiles(sorted(times))
    return {
        "min_ms": round_sig(min(times)),
        "q1_ms": round_sig(q1),
        "median_ms": round_sig(median),
        "q3_ms": round_sig(q3),
        "max_ms": round_sig(max(times)),
        "cpu_share": round(sum(cpus) / sum(times), 3) if sum(times) > 0 else None,
    }


def spread(x: Mapping[str, Any] | Sequence[float]) -> tuple[float, float, float]:
    """(q1, median, q3) of a stored row (its q1_ms, median_ms, q3_ms) or of raw samples."""
    if isinstance(x, Mapping):
        return x["q1_ms"], x["median_ms"], x["q3_ms"]
    if not len(x):
        raise ValueError("spread: expected a row or at least one sample, got none")
    return quartiles(sorted(x))


def ratio_range(
    a: Mapping[str, Any] | Sequence[float], b: Mapping[str, Any] | Sequence[float]
) -> tuple[float, float]:
    """The range of the time ratio a/b that the two interquartile ranges allow:
    (q1(a)/q3(b), q3(a)/q1(b)). ``a`` and ``b`` are stored rows or raw samples (:func:`spread`)."""
    a1, _, a3 = spread(a)
    b1, _, b3 = spread(b)
    return a1 / b3, a3 / b1


def verdict(
    a: Mapping[str, Any] | Sequence[float],
    b: Mapping[str, Any] | Sequence[float],
    goal: float | None = None,
) -> str:
    """What the spreads of two timings allow one to say, by their interquartile ranges.

    Without ``goal``: "faster" if ``a``'s whole IQR lies below ``b``'s, "slower" if above, else
    "too close to call". With ``goal`` (a bound on the time ratio a/b): the ratio's range from
    the IQRs is [q1(a)/q3(b), q3(a)/q1(b)]; "met" if it lies at or below ``goal``, "missed" if
    above, else "too close to call".

    ``a`` and ``b`` are stored rows or raw samples (:func:`spread`).
    """
    if goal is None:
        a1, _, a3 = spread(a)
        b1, _, b3 = spread(b)
        return "faster" if a3 < b1 else "slower" if a1 > b3 else "too close to call"
    low, high = ratio_range(a, b)
    return "met" if high <= goal else "missed" if low > goal else "too close to call"
