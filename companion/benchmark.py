r"""Timings the book stores: measured with their contention, loaded only when they are fair.

Every stored timing file of the book goes through this module: chapter 11's benchmark
(``benchmarks/bench.py``, ``book/data/11_bench_cpu_t1.json`` and ``_t2``) and chapter 12's speed
and generation tables (``book/scripts/12_speed_sweep.py`` and ``12_lm_sweep.py --generation``,
``book/data/12_speed_cpu.json`` and ``12_generation_cpu.json``). The scripts measure with
:func:`timed` and :class:`ContentionMonitor` and write the file; :func:`load_results` reads one
back and refuses it unless it is consistent (:func:`validate_results`) and was measured on a
machine that left the run alone (:func:`check_conditions`).

Results file (JSON, ``"schema": 3``), every layout::

    layout            "bench" (chapter 11), "speed" or "generation" (chapter 12)
    created, duration_s, settings, notes
    device            type, name, torch, python, threads, cpu_count, affinity (the cores the
                      process was allowed on), ...
    contention        what else ran while the run ran (:class:`ContentionMonitor`):
                      wall_s, own_cpu_s (this process), cores (per core, from /proc/stat: busy_s,
                      steal_s, idle_s over the run), load_before and load_after (1, 5, 15 min),
                      and two summaries the loader recomputes: others_cores (the CPU other
                      processes used on the run's cores, in cores) and cpu_share (the timed
                      thread's CPU time over the wall time, all timed repeats together)
    conditions        the problems :func:`check_conditions` found when the run ended
    timed rows        in ``forward_backward`` and ``training`` (bench) or ``rows``: every timed
                      repeat as ``times_ms`` (wall clock) and ``cpu_ms`` (the timing thread's
                      CPU time), in the order measured, and the summaries min_ms, q1_ms,
                      median_ms, q3_ms, max_ms and cpu_share, which the loader recomputes

Bench layout, besides: ``forward_backward`` rows per kind, shape, variant and precision (or
``skipped`` with the reason), with ratio_to_torch and max_abs_diff; ``training`` the same for
the training steps of a char-LM, with tokens_per_s; ``recompilation``; ``goals``, each goal of
:data:`GOALS` with its measured ratio and :func:`verdict`. Every bench time is forward+backward of
one layer (the loss is the sum of the outputs), in milliseconds; a ratio is a variant's median
over ``torch.nn``'s at the same shape, measured in the same process with the variants
interleaved. Speed rows: model, length, batch (one forward+backward). Generation rows: model,
context, bytes (ms per generated character).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA_VERSION",
    "LAYOUTS",
    "BASELINE",
    "FLOAT32",
    "BF16",
    "VARIANTS",
    "Shape",
    "Goal",
    "GOALS",
    "Limits",
    "RefusedResults",
    "timed",
    "summarize",
    "ContentionMonitor",
    "new_results",
    "finish_results",
    "load_results",
    "validate_results",
    "check_conditions",
    "outliers",
    "conditions_report",
    "spread",
    "verdict",
    "find_row",
    "goal_report",
    "ratio",
    "ratio_table",
    "batch_curve",
    "crossover_batch",
    "format_table",
    "plot_ratios",
    "plot_batch_curves",
]

#: Bump when the layout of the results file changes; :func:`load_results` checks it.
SCHEMA_VERSION = 3
#: The layouts of the stored timing files, with the sections that hold their timed rows.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "bench": ("forward_backward", "training"),
    "speed": ("rows",),
    "generation": ("rows",),
}

BASELINE = "torch.nn"
FLOAT32 = "float32"
BF16 = "bf16-autocast"

#: Every variant the benchmark knows, with what it is.
VARIANTS: dict[str, str] = {
    "torch.nn": "PyTorch's layer: oneDNN's fused LSTM on a CPU, cuDNN on a GPU",
    "companion": "companion.models, the readable layer (eager, autograd records every step)",
    "bare": "the same equations as bare tensor operations in a loop, nothing else",
    "naive": "one matrix product per gate and operand, x[t] indexed in the loop",
    "companion+fused": "companion.fused: one autograd Function per layer, backward by hand",
    "companion+compile": "the companion layer under torch.compile (the loop unrolled)",
    "companion+cudagraphs": "CUDA only: forward and backward replayed as CUDA graphs",
    "companion+compile-ro": "CUDA only: torch.compile(mode='reduce-overhead')",
}


@dataclass(frozen=True)
class Shape:
    """One problem size: batch N, sequence length T, input features H_in, hidden units H."""

    batch: int
    length: int
    input_size: int
    hidden_size: int

    def label(self) -> str:
        return f"N={self.batch} L={self.length} H_in={self.input_size} H={self.hidden_size}"

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Shape:
        return cls(row["batch"], row["length"], row["input_size"], row["hidden_size"])


@dataclass(frozen=True)
class Goal:
    """Forward+backward of ``variant`` within ``max_ratio`` times ``baseline``'s, on ``device``,
    for ``kind`` at ``shape``."""

    device: str
    kind: str
    variant: str
    shape: Shape
    max_ratio: float
    baseline: str = BASELINE


#: The small shape the book's models live at: where the fixed cost per operation shows.
SMALL = Shape(32, 100, 32, 32)
#: The CPU shapes every variant is timed at: H from 32 to 256 at N=32, L=100; L=50 and 200 at
#: H=32 (times must grow with L); and the larger-batch shape of the first benchmark.
CPU_SHAPES: tuple[Shape, ...] = (
    *(Shape(32, 100, 32, h) for h in (32, 64, 128, 256)),
    Shape(32, 50, 32, 32),
    Shape(32, 200, 32, 32),
    Shape(64, 50, 64, 256),
)
#: The per-step fixed cost: one unit, one feature, one sequence, so nearly no arithmetic.
FLOOR_SHAPE = Shape(1, 100, 1, 1)
GPU_GOAL_SHAPE = Shape(64, 100, 64, 256)

GOALS: tuple[Goal, ...] = (
    # The readable layer costs at most 1.2x the same equations as bare operations.
    *(Goal("cpu", k, "companion", SMALL, 1.2, "bare") for k in ("LSTM", "GRU")),
    # The readable layer within 1.5x of torch.nn where the products are large, H >= 128.
    *(
        Goal("cpu", k, "companion", s, 1.5)
        for k in ("LSTM", "GRU")
        for s in CPU_SHAPES
        if s.hidden_size >= 128
    ),
    # The opt-in fast path within 1.5x of torch.nn at every shape.
    *(Goal("cpu", k, "companion+fused", s, 1.5) for k in ("LSTM", "GRU") for s in CPU_SHAPES),
    Goal("cuda", "LSTM", "companion+cudagraphs", GPU_GOAL_SHAPE, 2.0),
    Goal("cuda", "GRU", "companion+cudagraphs", GPU_GOAL_SHAPE, 2.0),
)


@dataclass(frozen=True)
class Limits:
    """What :func:`check_conditions` tolerates, field by field:

    - ``min_cpu_share``: the timing thread's CPU time over the wall time, per row and for the
      run. A thread that had a core to itself runs for all of its wall time; below 0.9 it
      waited for a core (it was preempted) for a tenth of its time or more.
    - ``max_other_cores``: CPU time other processes used during the run on the cores the run was
      allowed on, over the run's wall time: 0.15 is 15% of one core, on average.
    - ``load_margin``: how far the load averages after the run may exceed the core count (the
      run's own threads count in them).
    """

    min_cpu_share: float = 0.9
    max_other_cores: float = 0.15
    load_margin: float = 0.5


class RefusedResults(ValueError):
    """A timing file measured under conditions :func:`check_conditions` refuses."""


# ------------------------------------------------------------------------------------------------
# Measuring
# ------------------------------------------------------------------------------------------------


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


def _sig(value: float, digits: int = 4) -> float:
    """``value`` rounded to ``digits`` significant digits (timings are not worth more)."""
    if value == 0 or value != value or value in (float("inf"), float("-inf")):
        return value
    from math import floor, log10

    return round(value, digits - 1 - int(floor(log10(abs(value)))))


def _quartiles(ms: Sequence[float]) -> tuple[float, float, float]:
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
    times = [_sig(t * 1e3 / scale) for t in wall_s]
    cpus = [_sig(c * 1e3 / scale) for c in cpu_s]
    return {"times_ms": times, "cpu_ms": cpus, **_summaries(times, cpus)}


def _summaries(times: Sequence[float], cpus: Sequence[float]) -> dict:
    q1, median, q3 = _quartiles(sorted(times))
    return {
        "min_ms": _sig(min(times)),
        "q1_ms": _sig(q1),
        "median_ms": _sig(median),
        "q3_ms": _sig(q3),
        "max_ms": _sig(max(times)),
        "cpu_share": round(sum(cpus) / sum(times), 3) if sum(times) > 0 else None,
    }


def _proc_stat(path: str = "/proc/stat") -> dict[str, tuple[int, int, int]] | None:
    """Per core: (busy, steal, idle) clock ticks since boot, from /proc/stat; None where there
    is no /proc/stat (not Linux)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    cores = {}
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            user, nice, system, idle, iowait, irq, softirq, steal = (
                int(v) for v in (fields + ["0"] * 8)[:8]
            )
            cores[name[3:]] = (user + nice + system + irq + softirq, steal, idle + iowait)
    return cores


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: every core
        return list(range(os.cpu_count() or 1))


class ContentionMonitor:
    """What else used the machine while a run ran.

    ``with ContentionMonitor() as monitor: ...`` reads the load averages, every core's busy,
    stolen and idle time (/proc/stat), this process's CPU time and the wall clock on entry and
    exit; :meth:`record` is the ``contention`` section of a results file. Another process's
    CPU time on the run's cores is the cores' busy and stolen time minus this process's own.
    """

    def __enter__(self) -> ContentionMonitor:
        self.load_before = _load_average()
        self._stat = _proc_stat()
        self._own = time.process_time()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.own_cpu_s = time.process_time() - self._own
        after = _proc_stat()
        self.load_after = _load_average()
        self.cores = None
        if self._stat is not None and after is not None:
            tick = os.sysconf("SC_CLK_TCK")
            self.cores = {
                k: dict(
                    zip(
                        ("busy_s", "steal_s", "idle_s"),
                        (round((a - b) / tick, 3) for a, b in zip(after[k], self._stat[k])),
                    )
                )
                for k in after
                if k in self._stat
            }

    def record(self) -> dict:
        """The ``contention`` section (without the summaries :func:`finish_results` adds)."""
        return {
            "wall_s": round(self.wall_s, 3),
            "own_cpu_s": round(self.own_cpu_s, 3),
            "cores": self.cores,
            "load_before": self.load_before,
            "load_after": self.load_after,
        }


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def new_results(layout: str, settings: Mapping[str, Any], device: Mapping[str, Any]) -> dict:
    """The head of a results file of ``layout``: schema, created, device, settings, notes.

    ``device`` needs at least type, name and threads; the torch and Python versions, the
    core count and the cores the process is allowed on (its affinity) are added here.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"new_results: expected a layout in {tuple(LAYOUTS)}, got {layout!r}")
    import torch

    return {
        "schema": SCHEMA_VERSION,
        "layout": layout,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu": cpu_name(),
            **device,
            "cpu_count": os.cpu_count(),
            "affinity": _affinity(),
        },
        "settings": dict(settings),
        "notes": [],
        **{section: [] for section in LAYOUTS[layout]},
    }


def finish_results(results: dict, monitor: ContentionMonitor) -> dict:
    """Add the run's contention, duration and conditions to ``results`` (and return it)."""
    results["contention"] = monitor.record()
    results["duration_s"] = round(monitor.wall_s, 1)
    results["contention"].update(_contention_summaries(results))
    results["conditions"] = check_conditions(results)
    return results


# ------------------------------------------------------------------------------------------------
# Reading and checking
# ------------------------------------------------------------------------------------------------

_REQUIRED = {
    "schema",
    "layout",
    "created",
    "device",
    "settings",
    "contention",
    "notes",
}
_DEVICE_KEYS = ("type", "name", "torch", "threads", "cpu_count", "affinity")
_CONTENTION_KEYS = (
    "wall_s",
    "own_cpu_s",
    "cores",
    "load_before",
    "load_after",
    "others_cores",
    "cpu_share",
)
_ROW_KEYS = {
    "forward_backward": ("kind", "variant", "precision", "batch", "length", "input_size"),
    "training": ("kind", "variant", "precision", "batch", "length"),
    "rows": ("model",),
}
_LAYOUT_ROW_KEYS = {"speed": ("length", "batch"), "generation": ("context", "bytes")}
_SUMMARIES = ("min_ms", "q1_ms", "median_ms", "q3_ms", "max_ms", "cpu_share")
#: Stored summaries are rounded to 4 significant digits; recomputed ones must agree to this.
_REL = 1.5e-3


def _timed_rows(results: Mapping[str, Any]) -> list[tuple[str, int, Mapping[str, Any]]]:
    """(section, index, row) of every row that was timed (not skipped)."""
    return [
        (section, i, row)
        for section in LAYOUTS[results["layout"]]
        for i, row in enumerate(results[section])
        if "skipped" not in row
    ]


def _label(row: Mapping[str, Any]) -> str:
    """A row as a reader finds it: its kind, model or variant and its sizes."""
    names = ("kind", "model", "variant", "precision", "group")
    sizes = {
        "batch": "N",
        "length": "L",
        "input_size": "H_in",
        "hidden_size": "H",
        "context": "context",
    }
    head = " ".join(str(row[k]) for k in names if k in row and row[k] != FLOAT32)
    return head + " " + " ".join(f"{s}={row[k]}" for k, s in sizes.items() if k in row)


def _where(section: str) -> str:
    """How a message names a row's section: "training row ", or "row " in a one-section file."""
    return "row " if section == "rows" else f"{section} row "


def _contention_summaries(results: Mapping[str, Any]) -> dict:
    """others_cores and cpu_share, recomputed from the raw measurements."""
    c = results["contention"]
    allowed = [str(k) for k in results["device"]["affinity"]]
    others = None
    if c.get("cores") and c.get("wall_s"):
        used = sum(c["cores"][k]["busy_s"] + c["cores"][k]["steal_s"] for k in allowed)
        others = round(max(used - c["own_cpu_s"], 0.0) / c["wall_s"], 3)
    rows = [row for _, _, row in _timed_rows(results)]
    wall = sum(sum(r["times_ms"]) for r in rows)
    cpu = sum(sum(r["cpu_ms"]) for r in rows)
    return {"others_cores": others, "cpu_share": round(cpu / wall, 3) if wall > 0 else None}


def _close(stored: Any, computed: float, rel: float = _REL, abs_: float = 1e-9) -> bool:
    return isinstance(stored, (int, float)) and abs(stored - computed) <= rel * abs(computed) + abs_


def _null_fields(mapping: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    missing = [k for k in keys if k not in mapping]
    if missing:
        raise ValueError(f"benchmark results: expected {where}.{missing[0]}, it is missing")
    nulls = [k for k in keys if mapping[k] is None]
    if nulls:
        raise ValueError(
            f"benchmark results: {where}.{nulls[0]} is null: a measurement that was not made "
            "is a refusal, not a pass"
        )


def _validate_contention(results: Mapping[str, Any]) -> None:
    device, c = results["device"], results["contention"]
    _null_fields(c, _CONTENTION_KEYS, "contention")
    for key in ("load_before", "load_after"):
        if len(c[key]) != 3 or any(v is None for v in c[key]):
            raise ValueError(
                f"benchmark results: expected contention.{key} as the 1, 5 and 15 minute load "
                f"averages, got {c[key]}"
            )
    cores = c["cores"]
    if len(cores) != device["cpu_count"]:
        raise ValueError(
            f"benchmark results: device.cpu_count says {device['cpu_count']} cores, but the "
            f"file's per-core data (contention.cores) show {len(cores)}"
        )
    stray = [k for k in device["affinity"] if str(k) not in cores]
    if stray:
        raise ValueError(
            f"benchmark results: the run was allowed on cores {device['affinity']}, but "
            f"contention.cores has no data for {stray}"
        )
    wall = c["wall_s"]
    for k, core in cores.items():
        total = core["busy_s"] + core["steal_s"] + core["idle_s"]
        if not 0.9 * wall - 0.05 <= total <= 1.1 * wall + 0.05:
            raise ValueError(
                f"benchmark results: core {k} accounts for {total:.2f} s of a {wall:.2f} s run; "
                "per-core times that do not add up to the run's wall time are not a measurement"
            )
    used = sum(cores[str(k)]["busy_s"] + cores[str(k)]["steal_s"] for k in device["affinity"])
    if c["own_cpu_s"] > 1.05 * used + 0.05:
        raise ValueError(
            f"benchmark results: the run used {c['own_cpu_s']:.2f} CPU seconds, more than its "
            f"cores {device['affinity']} were busy ({used:.2f} s)"
        )
    recomputed = _contention_summaries(results)
    for key, value in recomputed.items():
        if value is None or not _close(c[key], value, rel=0.01, abs_=2e-3):
            raise ValueError(
                f"benchmark results: stored contention.{key} {c[key]}, but the file's raw "
                f"measurements give {value}"
            )


def _validate_row(section: str, i: int, row: Mapping[str, Any]) -> None:
    where = f"{section} row {i} ({_label(row)})"
    _null_fields(row, ("times_ms", "cpu_ms", *_SUMMARIES), where)
    times, cpus = row["times_ms"], row["cpu_ms"]
    if not times or len(times) != len(cpus) or any(v is None for v in (*times, *cpus)):
        raise ValueError(
            f"benchmark results: {where}: expected as many CPU times as wall times, none null, "
            f"got {len(times)} and {len(cpus)}"
        )
    if any(t <= 0 or c < 0 for t, c in zip(times, cpus)):
        raise ValueError(f"benchmark results: {where}: times must be positive")
    over = [(t, c) for t, c in zip(times, cpus) if c > t * (1 + _REL) + 1e-6]
    if over:
        raise ValueError(
            f"benchmark results: {where}: a repeat's thread CPU time {over[0][1]} ms exceeds "
            f"its wall time {over[0][0]} ms, which one thread cannot do"
        )
    for key, value in _summaries(times, cpus).items():
        rel = 2e-3 if key == "cpu_share" else _REL
        if not _close(row[key], value, rel=rel, abs_=1e-3 if key == "cpu_share" else 1e-9):
            raise ValueError(
                f"benchmark results: {where}: stored {key} {row[key]}, but its {len(times)} "
                f"samples give {value}"
            )


def validate_results(results: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` saying what is wrong unless ``results`` is a complete, consistent
    timing file: every field present and none null, every summary equal to the one its raw
    samples give, the core count equal to the number of cores the file has data for, every
    core's time adding up to the run's wall time, and (bench layout) the ratios and goals equal
    to the ones the medians give. :func:`check_conditions` then judges the measurement."""
    if results.get("schema") != SCHEMA_VERSION:
        raise ValueError(
            f"benchmark results: expected schema {SCHEMA_VERSION}, got {results.get('schema')} "
            "(measure again: benchmarks/remeasure.sh; older files lack the raw samples and "
            "the contention measurements that schema 3 stores)"
        )
    missing = _REQUIRED - set(results)
    if missing:
        raise ValueError(
            f"benchmark results: expected keys {sorted(_REQUIRED)}, missing {sorted(missing)}"
        )
    if results["layout"] not in LAYOUTS:
        raise ValueError(
            f"benchmark results: expected a layout in {tuple(LAYOUTS)}, got {results['layout']!r}"
        )
    _null_fields(results["device"], _DEVICE_KEYS, "device")
    for section in LAYOUTS[results["layout"]]:
        if section not in results:
            raise ValueError(f"benchmark results: expected the section {section!r}")
        keys = _ROW_KEYS[section] + _LAYOUT_ROW_KEYS.get(results["layout"], ())
        for i, row in enumerate(results[section]):
            lacking = [k for k in keys if k not in row]
            if lacking:
                raise ValueError(f"benchmark results: {section} row {i} lacks {lacking}")
            if "skipped" not in row:
                _validate_row(section, i, row)
    _validate_contention(results)
    if results["layout"] == "bench":
        _validate_bench(results)


def _validate_bench(results: Mapping[str, Any]) -> None:
    """The bench layout's derived fields: ratio_to_torch and the goals, from the medians."""
    for section, keys in (
        ("forward_backward", ("group", "kind", "batch", "length", "input_size", "hidden_size")),
        ("training", ("kind",)),
    ):
        base = {
            tuple(r.get(k) for k in keys) + (r["precision"],): r["median_ms"]
            for r in results[section]
            if r["variant"] == BASELINE and "median_ms" in r
        }
        for i, r in enumerate(results[section]):
            ref = base.get(tuple(r.get(k) for k in keys) + (r["precision"],))
            if (
                ref
                and "median_ms" in r
                and not _close(r.get("ratio_to_torch"), r["median_ms"] / ref, 6e-3)
            ):
                raise ValueError(
                    f"benchmark results: {section} row {i} ({_label(r)}): stored ratio_to_torch "
                    f"{r.get('ratio_to_torch')}, but its medians give {r['median_ms'] / ref:.3g}"
                )
    if "goals" not in results or results["goals"] != goal_report(results):
        raise ValueError(
            "benchmark results: the stored goals are not the ones the medians give "
            "(companion.benchmark.goal_report)"
        )


def load_results(
    path: str | os.PathLike, refuse: bool = True, limits: Limits | None = None
) -> dict:
    """Read a stored timing file of any layout, check that it is consistent
    (:func:`validate_results`, always) and that it was measured under fair conditions
    (:func:`check_conditions`).

    Raises:
        ValueError: if the file is incomplete or inconsistent.
        RefusedResults: (a ``ValueError``) if ``refuse`` and the conditions were not fair; the
            message lists every problem. ``refuse=False`` returns such a file, to inspect it.
    """
    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    try:
        validate_results(results)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    problems = check_conditions(results, limits)
    if refuse and problems:
        raise RefusedResults(
            f"{path}: refused, measured under unfair conditions:\n- " + "\n- ".join(problems)
        )
    return results


def _load_problems(results: Mapping[str, Any], limits: Limits) -> list[str]:
    c, cores = results["contention"], results["device"]["cpu_count"]
    problems = []
    for when, values, bound in (
        ("before", c["load_before"], cores),
        ("after", c["load_after"], cores + limits.load_margin),
    ):
        for minutes, value in zip((1, 5, 15), values):
            if value > bound:
                problems.append(
                    f"load average over {minutes} min {value} {when} the run, above "
                    f"{bound:g} ({cores} cores{'' if when == 'before' else ' + margin'}) "
                    f"by {value - bound:.2f}"
                )
    return problems


def _contention_problems(results: Mapping[str, Any], limits: Limits) -> list[str]:
    device, c = results["device"], results["contention"]
    problems = []
    if device["threads"] > len(device["affinity"]):
        problems.append(
            f"{device['threads']} threads on {len(device['affinity'])} allowed core(s) "
            f"{device['affinity']}: the run competed with itself"
        )
    if c["others_cores"] > limits.max_other_cores:
        problems.append(
            f"other processes used {c['others_cores']:.2f} cores on average during the run "
            f"(on cores {device['affinity']}), above {limits.max_other_cores} by "
            f"{c['others_cores'] - limits.max_other_cores:.2f}"
        )
    if device["type"] != "cpu":  # a thread that waits for a GPU need not hold its core
        return problems
    if c["cpu_share"] < limits.min_cpu_share:
        problems.append(
            f"the run: its timing thread ran {c['cpu_share']:.0%} of the timed wall time "
            f"(needs {limits.min_cpu_share:.0%}), short by "
            f"{limits.min_cpu_share - c['cpu_share']:.0%}: it waited for a core"
        )
    for section, _, row in _timed_rows(results):
        if row["cpu_share"] < limits.min_cpu_share:
            problems.append(
                f"{_where(section)}{_label(row)}: its thread ran {row['cpu_share']:.0%} of the "
                f"wall time (needs {limits.min_cpu_share:.0%}), short by "
                f"{limits.min_cpu_share - row['cpu_share']:.0%}"
            )
    return problems


#: Per layout: what names a series, and the sizes the work grows with. Generation: a
#: recurrent model's step does not depend on the context read, the transformer's grows with it.
_SERIES = {
    "forward_backward": ("kind", "variant", "precision"),
    "training": ("kind", "variant", "precision"),
    "rows": ("model",),
}
_WORK = {
    "forward_backward": ("batch", "length", "input_size", "hidden_size"),
    "training": ("batch", "length", "embedding", "hidden_size"),
    "speed": ("batch", "length"),
    "generation": ("context",),
}
_CONSTANT_WORK = {"generation": ("LSTM", "GRU", "minGRU", "minLSTM")}


def _monotone_problems(results: Mapping[str, Any]) -> list[str]:
    """Every pair of rows of one series that differ in one size only: the larger size must not
    have run faster than the smaller one's fastest repeat."""
    problems = []
    for section in LAYOUTS[results["layout"]]:
        axes = _WORK[results["layout"]] if section == "rows" else _WORK[section]
        constant = _CONSTANT_WORK.get(results["layout"], ())
        rows = [
            r for r in results[section] if "skipped" not in r and r.get("model") not in constant
        ]
        for axis in axes:
            series: dict[tuple, list[Mapping[str, Any]]] = {}
            for r in rows:
                key = tuple(r.get(k) for k in _SERIES[section]) + tuple(
                    r.get(a) for a in axes if a != axis
                )
                series.setdefault(key, []).append(r)
            for group in series.values():
                group = sorted(group, key=lambda r: r[axis])
                for small, large in zip(group, group[1:]):
                    if large[axis] > small[axis] and large["median_ms"] < small["min_ms"]:
                        problems.append(
                            f"{_label(large)} took {large['median_ms']} ms, less than "
                            f"{axis}={small[axis]}'s fastest run ({small['min_ms']} ms): "
                            "more work ran faster"
                        )
    return problems


def check_conditions(results: Mapping[str, Any], limits: Limits | None = None) -> list[str]:
    """The reasons not to trust a run, as sentences that say which measurement failed and by
    how much; an empty list if there are none. ``results`` must pass :func:`validate_results`.

    - **Preempted.** The timing thread's CPU time over the wall time, for the run and for every
      row (CPU runs), below ``limits.min_cpu_share``.
    - **Shared cores.** Other processes' CPU time on the run's cores (/proc/stat), on average
      more than ``limits.max_other_cores`` cores; more threads than allowed cores.
    - **Load.** Any of the 1, 5 and 15 minute load averages above the core count before the
      run, or above it plus ``limits.load_margin`` after.
    - **Work.** In every series (kind, variant and precision, or model), a row with more work
      (larger batch, length, input or hidden size, or context) whose median is below the
      fastest repeat of the row with less that differs from it in that size only.
    """
    limits = limits or Limits()
    return (
        _contention_problems(results, limits)
        + _load_problems(results, limits)
        + _monotone_problems(results)
    )


def outliers(results: Mapping[str, Any], far: float = 3.0) -> list[str]:
    """Repeats far outside their row's spread, as sentences: a sample more than ``far``
    interquartile ranges above the third quartile or below the first (Tukey's "far out").
    They are reported, not refused: the median and quartiles already discount them."""
    found = []
    for section, _, row in _timed_rows(results):
        iqr = row["q3_ms"] - row["q1_ms"]
        high = [t for t in row["times_ms"] if t > row["q3_ms"] + far * iqr]
        low = [t for t in row["times_ms"] if t < row["q1_ms"] - far * iqr]
        if high or low:
            found.append(
                f"{_where(section)}{_label(row)}: median {row['median_ms']} ms, IQR "
                f"{row['q1_ms']}-{row['q3_ms']}, far out: {sorted(low + high)}"
            )
    return found


def spread(x: Mapping[str, Any] | Sequence[float]) -> tuple[float, float, float]:
    """(q1, median, q3) of a stored row (its q1_ms, median_ms, q3_ms) or of raw samples."""
    if isinstance(x, Mapping):
        return x["q1_ms"], x["median_ms"], x["q3_ms"]
    if not len(x):
        raise ValueError("spread: expected a row or at least one sample, got none")
    return _quartiles(sorted(x))


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
    a1, _, a3 = spread(a)
    b1, _, b3 = spread(b)
    if goal is None:
        return "faster" if a3 < b1 else "slower" if a1 > b3 else "too close to call"
    low, high = a1 / b3, a3 / b1
    return "met" if high <= goal else "missed" if low > goal else "too close to call"


def find_row(
    results: Mapping[str, Any],
    kind: str,
    variant: str,
    shape: Shape,
    precision: str = FLOAT32,
    group: str = "goal",
) -> Mapping[str, Any] | None:
    """The timed forward+backward row of one kind, variant, shape, precision and group (None if
    it was not timed): what :func:`verdict` compares."""
    for row in results["forward_backward"]:
        if (
            (row["kind"], row["variant"], row["precision"], row.get("group"))
            == (kind, variant, precision, group)
            and Shape.of(row) == shape
            and "median_ms" in row
        ):
            return row
    return None


def ratio(
    results: Mapping[str, Any],
    kind: str,
    variant: str,
    shape: Shape,
    baseline: str = BASELINE,
    precision: str = FLOAT32,
    group: str = "goal",
) -> float | None:
    """Median time of ``variant`` over ``baseline``'s, for ``kind`` at ``shape``, among the
    rows of ``group`` ("goal", "floor", "grid" or "compile": a shape can be in several); None if
    either was not measured."""
    rows = [find_row(results, kind, v, shape, precision, group) for v in (variant, baseline)]
    if None in rows:
        return None
    return round(rows[0]["median_ms"] / rows[1]["median_ms"], 3)


def goal_report(results: Mapping[str, Any]) -> list[dict]:
    """The goals of :data:`GOALS` for the results' device, each with the measured ratio of
    medians (None if not measured), whether that ratio is within the bound (``met``) and the
    :func:`verdict` of the spreads: "met", "missed" or "too close to call" (None if not
    measured). A chapter states a goal as met or missed only by its verdict."""
    device = results["device"]["type"]
    report = []
    for goal in GOALS:
        if goal.device != device:
            continue
        measured = ratio(results, goal.kind, goal.variant, goal.shape, goal.baseline)
        rows = [find_row(results, goal.kind, v, goal.shape) for v in (goal.variant, goal.baseline)]
        report.append(
            {
                "device": device,
                "kind": goal.kind,
                "variant": goal.variant,
                "baseline": goal.baseline,
                **asdict(goal.shape),
                "max_ratio": goal.max_ratio,
                "ratio": measured,
                "met": None if measured is None else measured <= goal.max_ratio,
                "verdict": None if None in rows else verdict(*rows, goal=goal.max_ratio),
            }
        )
    return report


def ratio_table(
    runs: Mapping[str, Mapping[str, Any]],
    kinds: Sequence[str] = ("LSTM", "GRU"),
    variants: Sequence[str] = ("companion", "companion+fused"),
    group: str = "goal",
) -> str:
    """Ratios to ``torch.nn`` at every shape of ``group``, one column per run (e.g. "1 thread")
    and variant. ``runs``: column label -> results."""
    first = next(iter(runs.values()))
    shapes = sorted(
        {Shape.of(r) for r in first["forward_backward"] if r.get("group") == group},
        key=lambda s: (s.batch, s.hidden_size, s.length),
    )
    short = {
        "companion": "default",
        "companion+fused": "fused",
        "bare": "bare",
        "naive": "naive",
        "companion+compile": "compile",
    }
    heads = [f"{short.get(v, v)} {label}" for label in runs for v in variants]
    width = max(10, *(len(h) for h in heads))
    lines = [f"{'kind':5} {'N':>3} {'L':>4} {'H':>4} " + " ".join(f"{h:>{width}}" for h in heads)]
    for kind in kinds:
        for s in shapes:
            cells = []
            for results in runs.values():
                for v in variants:
                    r = ratio(results, kind, v, s, group=group)
                    cells.append(f"{'-' if r is None else f'{r:.2f}x':>{width}}")
            lines.append(
                f"{kind:5} {s.batch:3d} {s.length:4d} {s.hidden_size:4d} " + " ".join(cells)
            )
    return "\n".join(lines)


def batch_curve(
    results: Mapping[str, Any],
    kind: str,
    variant: str = BASELINE,
    hidden_size: int = 256,
    length: int = 50,
    input_size: int = 64,
    precision: str = FLOAT32,
) -> dict[int, float]:
    """Batch size -> median forward+backward ms, for one kind, variant and (T, H_in, H)."""
    curve = {}
    for row in results["forward_backward"]:
        if (
            (row["kind"], row["variant"], row["precision"]) == (kind, variant, precision)
            and (row["length"], row["input_size"], row["hidden_size"])
            == (length, input_size, hidden_size)
            and "median_ms" in row
        ):
            curve[row["batch"]] = row["median_ms"]
    return dict(sorted(curve.items()))


def crossover_batch(
    cpu: Mapping[str, Any],
    gpu: Mapping[str, Any],
    kind: str = "LSTM",
    variant: str = BASELINE,
    gpu_variant: str | None = None,
    hidden_size: int = 256,
    length: int = 50,
    input_size: int = 64,
) -> int | None:
    """The smallest batch size from which on the GPU is faster than the CPU.

    Compares forward+backward medians (float32) at the batch sizes both results have, for the
    same kind and (T, H_in, H); ``gpu_variant`` defaults to ``variant``. Returns the smallest
    batch N such that the GPU wins at N and at every larger common batch, or None if it does
    not win at the largest one.

    Raises:
        ValueError: if the two results share no batch size for these settings.
    """
    cpu_curve = batch_curve(cpu, kind, variant, hidden_size, length, input_size)
    gpu_curve = batch_curve(gpu, kind, gpu_variant or variant, hidden_size, length, input_size)
    common = sorted(set(cpu_curve) & set(gpu_curve))
    if not common:
        raise ValueError(
            f"crossover_batch: expected batch sizes measured on both devices for {kind} "
            f"{variant} L={length} H_in={input_size} H={hidden_size}, got CPU "
            f"{sorted(cpu_curve)} and GPU {sorted(gpu_curve)}"
        )
    crossover = None
    for batch in reversed(common):
        if gpu_curve[batch] < cpu_curve[batch]:
            crossover = batch
        else:
            break
    return crossover


def _ms(value: float) -> str:
    """Milliseconds to three significant digits, without an exponent."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def format_table(
    results: Mapping[str, Any],
    section: str = "forward_backward",
    group: str | None = None,
    kinds: Sequence[str] | None = None,
) -> str:
    """The rows of one section as a text table of at most 80 characters a line: median and
    spread (min-max) in ms, and the ratio to ``torch.nn``."""
    lines = [
        f"{'kind':4} {'N':>3} {'L':>3} {'H':>3}  {'variant':17} {'median':>8} "
        f"{'min-max ms':>17} {'ratio':>6}"
    ]
    for r in results[section]:
        if group is not None and r.get("group") != group:
            continue
        if kinds is not None and r["kind"] not in kinds:
            continue
        head = (
            f"{r['kind']:4} {r['batch']:3d} {r['length']:3d} {r['hidden_size']:3d}  "
            f"{r['variant'][:17]:17}"
        )
        if "median_ms" not in r:
            lines.append(f"{head} {'skipped':>8}")
            continue
        spread = f"{_ms(r['min_ms'])}-{_ms(r['max_ms'])}"
        ratio_ = r.get("ratio_to_torch")
        lines.append(
            f"{head} {_ms(r['median_ms']):>8} {spread:>17} "
            f"{'' if ratio_ is None else f'{ratio_:.2f}x':>6}"
        )
    return "\n".join(lines)


_MARKERS = {
    "torch.nn": "o",
    "companion": "s",
    "bare": "x",
    "naive": "v",
    "companion+fused": "D",
    "companion+compile": "P",
    "companion+cudagraphs": "^",
    "companion+compile-ro": "*",
}


def plot_ratios(
    results: Mapping[str, Any],
    kinds: Sequence[str] = ("LSTM", "GRU"),
    variants: Sequence[str] = ("companion", "companion+fused"),
    group: str = "goal",
    axes=None,
):
    """Forward+backward time over ``torch.nn``'s against the hidden size H, per variant, at the
    shapes N=32, L=100 of ``group``; one panel per kind, log scale, the goals' bounds dashed.
    Returns the figure."""
    import matplotlib.pyplot as plt

    from companion.plots import COLORS

    if axes is None:
        fig, axes = plt.subplots(1, len(kinds), figsize=(10, 3.6), sharey=True, squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for ax, kind in zip(axes, kinds):
        color = COLORS.get(kind.lower(), "black")
        hiddens = sorted(
            {
                r["hidden_size"]
                for r in results["forward_backward"]
                if r.get("group") == group and (r["batch"], r["length"]) == (32, 100)
            }
        )
        for variant in variants:
            shapes = [Shape(32, 100, 32, h) for h in hiddens]
            points = [
                (s.hidden_size, ratio(results, kind, variant, s, group=group)) for s in shapes
            ]
            points = [(h, q) for h, q in points if q is not None]
            style = "-" if variant == "companion" else "--"
            ax.plot(
                [h for h, _ in points],
                [q for _, q in points],
                style,
                marker=_MARKERS.get(variant, "x"),
                color=color,
                label=variant,
            )
        ax.axhline(1, color=COLORS["baseline"], lw=0.8)
        ax.axhline(1.5, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xticks(hiddens)
        ax.set_xticklabels([str(h) for h in hiddens])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.set_xlabel("hidden size $H$ (N=32, L=100, $H_{in}$=32)")
        ax.set_title(f"{kind}: time relative to torch.nn", fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
    axes[0].set_ylabel("forward+backward time\n(1 = torch.nn; dotted: 1.5)")
    fig.tight_layout()
    return fig


def plot_batch_curves(
    curves: Mapping[str, tuple[Mapping[int, float], str, str]],
    ax=None,
    title: str = "Forward+backward time per sequence",
):
    """Milliseconds per sequence against batch size, log-log.

    Args:
        curves: label -> (batch -> median ms of the whole batch, colour, line style), e.g. from
            :func:`batch_curve`.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for label, (curve, color, style) in curves.items():
        batches = list(curve)
        ax.plot(
            batches,
            [curve[b] / b for b in batches],
            style,
            color=color,
            marker="o",
            ms=4,
            label=label,
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    batches = sorted({b for curve, _, _ in curves.values() for b in curve})
    ax.set_xticks(batches)
    ax.set_xticklabels([str(b) for b in batches])
    ax.minorticks_off()
    ax.set_xlabel("batch size N (sequences)")
    ax.set_ylabel("time per sequence (ms)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def conditions_report(results: Mapping[str, Any], limits: Limits | None = None) -> str:
    """What the run measured of its conditions, its problems and its far-out repeats, as
    lines of at most 80 characters."""
    import textwrap

    c, device = results["contention"], results["device"]
    lines = [
        f"{device['threads']} thread(s) on cores {device['affinity']} of {device['cpu_count']}, "
        f"{results['duration_s']} s",
        f"load average before {c['load_before']}, after {c['load_after']}",
        f"other processes: {c['others_cores']:.2f} cores on average",
        f"timing thread on a core {c['cpu_share']:.0%} of the timed time",
    ]
    problems = check_conditions(results, limits)
    far = outliers(results)
    for head, items in (("refused: ", problems), ("far out: ", far)):
        for item in items:
            lines += textwrap.wrap(item, 78, initial_indent=head, subsequent_indent="  ")
    if not problems:
        lines.append("conditions: fair (no problem found)")
    return "\n".join(lines)
