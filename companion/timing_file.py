r"""The timing file: written with its contention, loaded only when it is consistent and fair.

Every stored timing file of the book goes through this module: chapter 11's benchmark
(``benchmarks/bench.py``, ``book/data/11_bench_cpu_t1.json`` and ``_t2``) and chapter 12's speed
and generation tables (``book/scripts/12_speed_sweep.py`` and ``12_lm_sweep.py --generation``,
``book/data/12_speed_cpu.json`` and ``12_generation_cpu.json``). The scripts measure with
:func:`companion.timing.timed` inside a :class:`companion.contention.ContentionMonitor`, start
the file with :func:`new_results` and end it with :func:`finish_results`; :func:`load_results`
reads one back and refuses it unless it is consistent (:func:`validate_results`) and was
measured on a machine that left the run alone (:func:`check_conditions`).

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
:data:`~companion.speed_goals.GOALS` with its measured ratio and verdict (:func:`goals_section`).
Every bench time is forward+backward of one layer (the loss is the sum of the outputs), in
milliseconds; a ratio is a variant's median over ``torch.nn``'s at the same shape, measured in
the same process with the variants interleaved. Speed rows: model, length, batch (one
forward+backward of the whole batch). Generation rows: model, context, bytes (ms per generated
character).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from companion.contention import ContentionMonitor, affinity, cpu_name
from companion.speed_goals import BASELINE, FLOAT32, goal_report
from companion.timing import summaries

__all__ = [
    "SCHEMA_VERSION",
    "LAYOUTS",
    "Limits",
    "RefusedResults",
    "new_results",
    "finish_results",
    "goals_section",
    "load_results",
    "validate_results",
    "check_conditions",
    "outliers",
    "conditions_report",
]


#: Bump when the layout of the results file changes; :func:`load_results` checks it.
SCHEMA_VERSION = 3


#: The layouts of the stored timing files, with the sections that hold their timed rows.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "bench": ("forward_backward", "training"),
    "speed": ("rows",),
    "generation": ("rows",),
}


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
            "affinity": affinity(),
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
    for key, value in summaries(times, cpus).items():
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
    if "goals" not in results or results["goals"] != goals_section(results):
        raise ValueError(
            "benchmark results: the stored goals are not the ones the medians give "
            "(companion.benchmark.goal_report)"
        )


#: What :func:`~companion.speed_goals.goal_report` gives that the ``goals`` section does not
#: store: the ratio's range follows from the stored quartiles.
_UNSTORED_GOAL_KEYS = ("ratio_low", "ratio_high")


def goals_section(results: Mapping[str, Any]) -> list[dict]:
    """The ``goals`` section of a bench file: :func:`~companion.speed_goals.goal_report`
    without the ratio's range, which the stored quartiles give."""
    return [
        {k: v for k, v in goal.items() if k not in _UNSTORED_GOAL_KEYS}
        for goal in goal_report(results)
    ]


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
    have run faster than the smaller one's fastest repeat, in total time (never per
    sequence)."""
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
      fastest repeat of the row with less that differs from it in that size only. A row's time
      is that of all its work, a whole batch: a larger batch must take longer in total, but it
      may well cost more per sequence (oneDNN's LSTM does from N = 64 to 256), so the time
      per sequence is never checked.
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
