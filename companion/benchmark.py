"""Chapter 11's tables and figures from timing files, and every benchmark name in one place.

The benchmark's ideas live in their own modules, and this one re-exports them all, where the
scripts, the chapters and the tests have always found them:

- :mod:`companion.timing`: a timed call, its samples, quartiles and verdicts;
- :mod:`companion.contention`: what else used the machine during a run;
- :mod:`companion.timing_file`: the results file, written, checked and judged fair or refused;
- :mod:`companion.speed_goals`: chapter 11's goals, the rows that decide them, the report.

What is left here draws: :func:`ratio_table` and :func:`format_table` (text),
:func:`plot_ratios` and :func:`plot_batch_curves` (figures), and the batch curves they and the
chapter read (:func:`batch_curve`, :func:`crossover_batch`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from companion.contention import ContentionMonitor, cpu_name
from companion.speed_goals import (
    BASELINE,
    BF16,
    CPU_SHAPES,
    FLOAT32,
    FLOOR_SHAPE,
    GOALS,
    GPU_GOAL_SHAPE,
    SMALL,
    VARIANTS,
    Goal,
    Shape,
    find_row,
    goal_report,
    ratio,
)
from companion.timing import ratio_range, spread, summarize, timed, verdict
from companion.timing_file import (
    LAYOUTS,
    SCHEMA_VERSION,
    Limits,
    RefusedResults,
    check_conditions,
    conditions_report,
    finish_results,
    goals_section,
    load_results,
    new_results,
    outliers,
    validate_results,
)

__all__ = [
    "SCHEMA_VERSION",
    "LAYOUTS",
    "BASELINE",
    "FLOAT32",
    "BF16",
    "VARIANTS",
    "Shape",
    "Goal",
    "SMALL",
    "CPU_SHAPES",
    "FLOOR_SHAPE",
    "GPU_GOAL_SHAPE",
    "GOALS",
    "Limits",
    "RefusedResults",
    "timed",
    "summarize",
    "ContentionMonitor",
    "cpu_name",
    "new_results",
    "finish_results",
    "load_results",
    "validate_results",
    "check_conditions",
    "outliers",
    "conditions_report",
    "spread",
    "verdict",
    "ratio_range",
    "find_row",
    "goal_report",
    "goals_section",
    "ratio",
    "ratio_table",
    "batch_curve",
    "crossover_batch",
    "format_table",
    "plot_ratios",
    "plot_batch_curves",
]


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
