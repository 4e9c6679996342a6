r"""Reading the speed benchmark's results: load and check them, report goals, tables and plots.

The benchmark itself (the variants, the timing, the command line) is the script
``benchmarks/bench.py`` of the book's repository; it writes one JSON file per device and thread
count, e.g. ``book/data/11_bench_cpu_t1.json``. This module reads such files; chapter 11 uses it.

Results file (JSON, ``"schema": 2``)::

    device            type, name, torch, python, threads, cpu_count (CUDA: cuda, cudnn, ...)
    created, duration_s
    load_average_before, load_average_after     1, 5 and 15 minute load averages
    settings          repeats, warmup, preset, compile, argv, the char-LM sizes
    forward_backward  one row per kind, shape, variant and precision: min_ms, median_ms,
                      max_ms, q1_ms, q3_ms, times_ms, ratio_to_torch, max_abs_diff, ...
                      or ``skipped`` with the reason
    training          the same for training steps of a char-LM, with tokens_per_s
    recompilation     per compiled or fused variant: graphs compiled at each sequence length
    goals             each goal of :data:`GOALS` with its measured ratio and whether it is met
    notes, conditions the problems :func:`check_conditions` found when the run ended

Every time is forward+backward of one layer (the loss is the sum of the outputs), in
milliseconds; a ratio is a variant's median over ``torch.nn``'s median at the same shape, measured
in the same process with the variants interleaved.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "SCHEMA_VERSION",
    "BASELINE",
    "FLOAT32",
    "BF16",
    "VARIANTS",
    "Shape",
    "Goal",
    "GOALS",
    "load_results",
    "validate_results",
    "check_conditions",
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
SCHEMA_VERSION = 2

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
    """One problem size: batch N, sequence length L, input features H_in, hidden units H."""

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

_REQUIRED = {
    "schema",
    "created",
    "device",
    "settings",
    "forward_backward",
    "training",
    "goals",
    "load_average_before",
    "load_average_after",
}
_ROW_KEYS = {"kind", "variant", "precision", "batch", "length", "input_size", "hidden_size"}
_TIMES = ("min_ms", "median_ms", "max_ms")


def validate_results(results: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming what is missing if ``results`` is not a results file's
    content (the layout only; :func:`check_conditions` judges the measurement)."""
    missing = _REQUIRED - set(results)
    if missing:
        raise ValueError(
            f"benchmark results: expected keys {sorted(_REQUIRED)}, missing {sorted(missing)}"
        )
    if results["schema"] != SCHEMA_VERSION:
        raise ValueError(
            f"benchmark results: expected schema {SCHEMA_VERSION}, got {results['schema']}"
        )
    for key in ("type", "name", "torch", "threads", "cpu_count"):
        if key not in results["device"]:
            raise ValueError(f"benchmark results: expected device.{key}")
    for section in ("forward_backward", "training"):
        for i, row in enumerate(results[section]):
            lacking = _ROW_KEYS - {"input_size"} if section == "training" else _ROW_KEYS
            lacking = lacking - set(row)
            if lacking:
                raise ValueError(f"benchmark results: {section} row {i} lacks {sorted(lacking)}")
            if "skipped" not in row and not set(_TIMES) <= set(row):
                raise ValueError(
                    f"benchmark results: {section} row {i} has neither "
                    f"{', '.join(_TIMES)} nor skipped"
                )


def load_results(path: str | os.PathLike) -> dict:
    """Read and check (:func:`validate_results`) a results file of ``benchmarks/bench.py``."""
    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    validate_results(results)
    return results


def check_conditions(results: Mapping[str, Any], load_margin: float = 0.5) -> list[str]:
    """The reasons not to trust a run, as sentences; an empty list if there are none.

    - **Load.** The 1-minute load average before the run is above the number of cores, or after
      it above the cores plus ``load_margin`` (the run's own threads count in that one, so a
      quiet machine at full use reads about the core count).
    - **Work.** At the same kind, variant, batch and sizes, a longer sequence was faster than a
      shorter one beyond the spread: its median below the shorter one's fastest run.
    """
    problems = []
    cores = results["device"]["cpu_count"]
    before, after = results["load_average_before"], results["load_average_after"]
    if before is not None and before[0] > cores:
        problems.append(f"load average {before[0]} before the run, above {cores} cores")
    if after is not None and after[0] > cores + load_margin:
        problems.append(
            f"load average {after[0]} after the run, above {cores} cores (+{load_margin})"
        )
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in results["forward_backward"]:
        if "median_ms" in row:
            key = (
                row.get("group"),
                row["kind"],
                row["variant"],
                row["precision"],
                row["batch"],
                row["input_size"],
                row["hidden_size"],
            )
            groups.setdefault(key, []).append(row)
    for (_, kind, variant, _, n, _, h), rows in groups.items():
        rows = sorted(rows, key=lambda r: r["length"])
        for short, long in zip(rows, rows[1:]):
            if long["length"] > short["length"] and long["median_ms"] < short["min_ms"]:
                problems.append(
                    f"{kind} {variant} N={n} H={h}: L={long['length']} took "
                    f"{long['median_ms']} ms, less than L={short['length']}'s fastest run "
                    f"({short['min_ms']} ms)"
                )
    return problems


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
    medians = {}
    for row in results["forward_backward"]:
        if (
            (row["kind"], row["precision"], row.get("group")) == (kind, precision, group)
            and Shape.of(row) == shape
            and row["variant"] in (variant, baseline)
            and "median_ms" in row
        ):
            medians[row["variant"]] = row["median_ms"]
    if variant not in medians or baseline not in medians:
        return None
    return round(medians[variant] / medians[baseline], 3)


def goal_report(results: Mapping[str, Any]) -> list[dict]:
    """The goals of :data:`GOALS` for the results' device, each with the measured ratio (None if
    not measured) and whether it is met."""
    device = results["device"]["type"]
    report = []
    for goal in GOALS:
        if goal.device != device:
            continue
        measured = ratio(results, goal.kind, goal.variant, goal.shape, goal.baseline)
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
    """Batch size -> median forward+backward ms, for one kind, variant and (L, H_in, H)."""
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
    same kind and (L, H_in, H); ``gpu_variant`` defaults to ``variant``. Returns the smallest
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
