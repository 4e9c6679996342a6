"""Chapter 11's speed goals, and the timed rows that decide them.

A :class:`Goal` bounds the time of a variant over a baseline's (forward+backward of one layer,
at one :class:`Shape`); :data:`GOALS` are the book's. :func:`find_row` and :func:`ratio` read a
timing file's ``forward_backward`` rows; :func:`goal_report` gives every goal of the file's
device with its ratio of medians, the ratio's range from the two interquartile ranges and the
:func:`~companion.timing.verdict` decided on that range.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from companion.timing import ratio_range, verdict

__all__ = [
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
    "find_row",
    "ratio",
    "goal_report",
]


#: The variant every ratio is taken against, unless a goal names another.
BASELINE = "torch.nn"
#: A row timed in float32.
FLOAT32 = "float32"
#: A row timed under autocast to bfloat16.
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
#: The shape of the GPU goals: large enough for the GPU to matter.
GPU_GOAL_SHAPE = Shape(64, 100, 64, 256)


#: The book's speed goals, per device; :func:`goal_report` reports them.
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
    medians (None if not measured), whether that ratio is within the bound (``met``), the
    ratio's range from the two interquartile ranges (``ratio_low`` = q1 of the variant over q3
    of the baseline, ``ratio_high`` = q3 over q1; None if not measured) and the :func:`verdict`
    decided on that range: "met", "missed" or "too close to call" (None if not measured). A
    chapter states a goal as met or missed only by its verdict.

    A timing file stores the report without the range
    (:func:`~companion.timing_file.goals_section`)."""
    device = results["device"]["type"]
    report = []
    for goal in GOALS:
        if goal.device != device:
            continue
        measured = ratio(results, goal.kind, goal.variant, goal.shape, goal.baseline)
        rows = [find_row(results, goal.kind, v, goal.shape) for v in (goal.variant, goal.baseline)]
        low, high = (None, None) if None in rows else ratio_range(*rows)
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
                "ratio_low": low,
                "ratio_high": high,
                "verdict": None if None in rows else verdict(*rows, goal=goal.max_ratio),
            }
        )
    return report
