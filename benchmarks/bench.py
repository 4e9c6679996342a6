r"""The book's speed benchmark: RNN, LSTM and GRU layers, timed the same way on any device.

One command times, on the current device and in one process,

1. **forward+backward** of one layer (the loss is the sum of the outputs, the input does not
   require a gradient) for several *variants* that compute the same function from the same
   weights:

   ===========================  ===============================================================
   ``torch.nn``                 PyTorch's fused layer: oneDNN on a CPU, cuDNN on a GPU
   ``companion``                ``companion.models``, the book's readable layer (eager)
   ``naive``                    chapter 11's first cell: one matmul per gate and per operand,
                                ``x[t]`` indexed inside the loop
   ``companion+compile``        the whole companion layer under ``torch.compile`` (opt-in,
                                ``--compile``; its compile time and its recompilation at a new
                                sequence length are recorded)
   ``companion+cudagraphs``     CUDA only: forward and backward captured as CUDA graphs with
                                ``torch.cuda.make_graphed_callables`` and replayed
   ``companion+compile-ro``     CUDA only, opt-in: ``torch.compile(mode="reduce-overhead")``,
                                which also replays CUDA graphs
   ===========================  ===============================================================

   in ``float32`` and, on CUDA, also under ``bfloat16`` autocast (precision ``bf16-autocast``);
   on the goal shapes of the benchmark issue and on a small grid of batch and hidden sizes;
2. **training throughput** of a small character-level language model (embedding, one recurrent
   layer, linear read-out, cross-entropy, an Adam step) in sequences/s and tokens/s.

Every measurement is the median of ``--repeats`` runs after ``--warmup`` untimed ones; the
variants of one shape are interleaved, and the one that goes first rotates, so background load
hits all of them alike and the ratios hold even on a busy machine. CUDA (and MPS) work is
synchronised before the clock is read. Each variant's output is compared with ``torch.nn``'s
(``max_abs_diff``), so a fast but wrong variant shows.

The results go to a JSON file (``--out``) with the device's name, the torch version, the
threads, the load average before and after the run, the settings and every row; ``--csv``
writes the rows as a flat table too. ``load_results``, ``goal_report``, ``crossover_batch``,
``plot_ratios`` and ``plot_batch_curves`` read such a file back; chapter 11 of the book uses them.

Usage, from the repository root::

    python benchmarks/bench.py                     # this device, writes book/data/11_bench_<device>.json
    python benchmarks/bench.py --device cpu --compile --out book/data/11_bench_cpu.json
    python benchmarks/bench.py --device cuda --compile --out book/data/11_bench_cuda.json
    python benchmarks/bench.py --quick             # a few shapes, a minute or two; prints only

Options: ``--device {auto,cpu,cuda,mps}``, ``--quick``, ``--tiny`` (seconds, for the tests),
``--compile``, ``--compile-cache`` (let inductor reuse its on-disk cache; by default it is
disabled so that the compile time recorded is a cold one), ``--repeats N``, ``--warmup N``,
``--threads N``, ``--tf32`` (allow TF32 in matmuls and cuDNN on CUDA; by default PyTorch's own
defaults apply and are recorded), ``--out PATH``, ``--csv PATH``.

On a shared machine, pass ``--threads 1``: when more processes want a core than there are cores
(see the load average), every multi-threaded operation waits for its slowest thread and the times
become erratic, while one thread per process degrades evenly. The stored CPU results of the book
were made that way: ``python benchmarks/bench.py --device cpu --threads 1 --compile``.

Results file (JSON, ``"schema": 1``): ``device`` (type, name, torch, python, threads, cpu_count;
on CUDA also cuda, cudnn, the TF32 flags, memory), ``created``, ``duration_s``,
``load_average_before``/``_after`` (1, 5, 15 minutes), ``settings`` (repeats, warmup, compile,
preset, argv, the char-LM sizes), ``forward_backward`` and ``training`` (one row per kind, shape,
variant and precision: median_ms, q1_ms, q3_ms, times_ms, ratio_to_torch, sequences_per_s,
tokens_per_s for training, first_call_ms, compile_s for compiled variants, max_abs_diff, or
``skipped`` with the reason), ``recompilation`` (the new-length probes), ``goals`` (each goal with
its measured ratio and whether it is met) and ``notes``.

Goals (from the benchmark issue; forward+backward, float32, ratio to ``torch.nn`` in the same
process) are in :data:`GOALS`: on a CPU the readable LSTM within 1.5x at (N 64, L 50, H_in 64,
H 256) and 2.5x at (32, 100, 32, 128), the GRU within 1.2x, the compiled layer within 1.2x; on a
GPU the CUDA-graph replay within 2x of cuDNN at (64, 100, 64, 256). The eager per-step loop is
launch-bound on a GPU: every step launches about ten small kernels forward and twenty backward,
each costing a few microseconds whatever its size; a CUDA graph launches the whole sequence at
once.

About ``torch.compile`` on a recurrent layer: Dynamo unrolls the Python loop over time, so the
graph (and its compile time) grows with the sequence length L, and every new L compiles a new
graph, up to ``torch._dynamo.config.recompile_limit`` (8) lengths, after which the layer silently
runs eagerly. Pad or bucket sequence lengths when you compile.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from companion import models
from companion.device import device_name, pick_device

__all__ = [
    "SCHEMA_VERSION",
    "Shape",
    "Goal",
    "GOALS",
    "KINDS",
    "NaiveLayer",
    "time_interleaved",
    "build_layer",
    "bench_forward_backward",
    "bench_training",
    "probe_recompilation",
    "run_suite",
    "load_results",
    "validate_results",
    "goal_report",
    "crossover_batch",
    "batch_curve",
    "format_table",
    "plot_ratios",
    "plot_batch_curves",
    "main",
]

#: Bump when the layout of the results file changes; :func:`load_results` checks it.
SCHEMA_VERSION = 1

KINDS = ("LSTM", "GRU", "RNN")
#: Gate blocks per kind: rows of weight_ih are G·H.
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
_GATE_NAMES = {"RNN": ("h",), "LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n")}

BASELINE = "torch.nn"
FLOAT32 = "float32"
BF16 = "bf16-autocast"
#: Variants and where they can run. Compiled ones need ``--compile``.
VARIANTS: dict[str, tuple[str, ...]] = {
    "torch.nn": ("cpu", "cuda", "mps"),
    "companion": ("cpu", "cuda", "mps"),
    "naive": ("cpu", "cuda", "mps"),
    "companion+compile": ("cpu", "cuda"),
    "companion+cudagraphs": ("cuda",),
    "companion+compile-ro": ("cuda",),
}
COMPILED = ("companion+compile", "companion+compile-ro")
#: Variants also timed under bfloat16 autocast, on CUDA.
BF16_VARIANTS = ("torch.nn", "companion", "companion+cudagraphs", "companion+compile-ro")


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
    """Forward+backward of ``variant`` within ``max_ratio`` times ``torch.nn``'s, on ``device``."""

    device: str
    kind: str
    variant: str
    shape: Shape
    max_ratio: float


CPU_GOAL_SHAPES = (Shape(64, 50, 64, 256), Shape(32, 100, 32, 128))
GPU_GOAL_SHAPE = Shape(64, 100, 64, 256)
GOALS: tuple[Goal, ...] = (
    Goal("cpu", "LSTM", "companion", CPU_GOAL_SHAPES[0], 1.5),
    Goal("cpu", "LSTM", "companion", CPU_GOAL_SHAPES[1], 2.5),
    Goal("cpu", "GRU", "companion", CPU_GOAL_SHAPES[0], 1.2),
    Goal("cpu", "GRU", "companion", CPU_GOAL_SHAPES[1], 1.2),
    *(Goal("cpu", k, "companion+compile", s, 1.2) for k in ("LSTM", "GRU") for s in CPU_GOAL_SHAPES),
    Goal("cuda", "LSTM", "companion+cudagraphs", GPU_GOAL_SHAPE, 2.0),
    Goal("cuda", "GRU", "companion+cudagraphs", GPU_GOAL_SHAPE, 2.0),
)


@dataclass(frozen=True)
class Plan:
    """What one run measures."""

    kinds: tuple[str, ...]
    goal_shapes: tuple[Shape, ...]  # every variant
    grid_shapes: tuple[Shape, ...]  # the eager variants, for batch curves and the crossover
    compile_kinds: tuple[str, ...]
    compile_shapes: tuple[Shape, ...]
    train_kinds: tuple[str, ...]
    train: dict[str, int]  # batch, length, vocab, embedding, hidden
    repeats: int
    warmup: int


def _grid(batches: Iterable[int], hiddens: Iterable[int], length: int = 50, input_size: int = 64):
    return tuple(Shape(b, length, input_size, h) for h in hiddens for b in batches)


def make_plan(device: torch.device, preset: str = "full", repeats: int | None = None,
              warmup: int | None = None) -> Plan:
    """The shapes and settings of a ``preset``: "full", "quick" or "tiny" (the tests')."""
    on_gpu = device.type == "cuda"
    goal_shapes = (*CPU_GOAL_SHAPES, GPU_GOAL_SHAPE)
    compile_shapes = (GPU_GOAL_SHAPE,) if on_gpu else CPU_GOAL_SHAPES
    lm = {"batch": 32, "length": 100, "vocab": 96, "embedding": 32, "hidden": 256}
    if preset == "full":
        return Plan(KINDS, goal_shapes, _grid((1, 8, 64, 256), (64, 256)), ("LSTM", "GRU"),
                    compile_shapes, KINDS, lm, repeats or 15, warmup or 3)
    if preset == "quick":
        return Plan(("LSTM", "GRU"), goal_shapes[:2] if not on_gpu else goal_shapes,
                    _grid((1, 64), (256,)), ("LSTM",), compile_shapes[:1], ("LSTM",), lm,
                    repeats or 5, warmup or 2)
    if preset == "tiny":
        tiny_lm = {"batch": 3, "length": 5, "vocab": 11, "embedding": 4, "hidden": 6}
        return Plan(("LSTM", "GRU"), (Shape(4, 6, 3, 5),), _grid((1, 4), (5,), 6, 3), ("LSTM",),
                    (Shape(4, 6, 3, 5),), ("LSTM",), tiny_lm, repeats or 2, warmup or 1)
    raise ValueError(f"make_plan: expected preset 'full', 'quick' or 'tiny', got {preset!r}")


# ------------------------------------------------------------------------------------------------
# The variants
# ------------------------------------------------------------------------------------------------


class NaiveLayer(nn.Module):
    """A one-layer RNN/LSTM/GRU written gate by gate, as chapter 11 writes it first.

    Every gate has its own ``W_x*`` (H, H_in) and ``W_h*`` (H, H) and makes two matmuls per step
    (eight per step for the LSTM), and the loop reads ``x[t]``: what the equations say, with
    none of the speed-ups of ``companion.models`` (no input projection computed ahead, no fused
    recurrent matmul, no ``unbind``). Built from a ``torch.nn`` or companion layer's weights, it
    computes the same function; bias per gate ``b_* = b_x* + b_h*`` except the GRU's candidate,
    which keeps ``b_xn`` and ``b_hn`` apart as equation (5.3) needs.

    Input (L, N, H_in); returns ``(output (L, N, H), state)`` like ``torch.nn``'s layers.
    """

    def __init__(self, kind: str, source: nn.Module) -> None:
        super().__init__()
        if kind not in GATES:
            raise ValueError(f"NaiveLayer: expected kind in {tuple(GATES)}, got {kind!r}")
        if source.num_layers != 1 or source.bidirectional or source.batch_first or not source.bias:
            raise ValueError("NaiveLayer: expected a one-layer, one-direction, time-major layer with biases")
        self.kind = kind
        self.hidden_size = hidden = source.hidden_size
        w_ih, w_hh = source.weight_ih_l0.detach(), source.weight_hh_l0.detach()
        b_ih, b_hh = source.bias_ih_l0.detach(), source.bias_hh_l0.detach()
        for k, name in enumerate(_GATE_NAMES[kind]):
            rows = slice(k * hidden, (k + 1) * hidden)
            self.register_parameter(f"W_x{name}", nn.Parameter(w_ih[rows].clone()))
            self.register_parameter(f"W_h{name}", nn.Parameter(w_hh[rows].clone()))
            if kind == "GRU" and name == "n":
                self.b_xn = nn.Parameter(b_ih[rows].clone())
                self.b_hn = nn.Parameter(b_hh[rows].clone())
            else:
                self.register_parameter(f"b_{name}", nn.Parameter(b_ih[rows] + b_hh[rows]))

    def forward(self, x: Tensor) -> tuple[Tensor, Any]:
        h = x.new_zeros(x.size(1), self.hidden_size)
        c = torch.zeros_like(h)
        outputs = []
        for t in range(x.size(0)):
            if self.kind == "LSTM":
                i = torch.sigmoid(x[t] @ self.W_xi.T + h @ self.W_hi.T + self.b_i)
                f = torch.sigmoid(x[t] @ self.W_xf.T + h @ self.W_hf.T + self.b_f)
                g = torch.tanh(x[t] @ self.W_xg.T + h @ self.W_hg.T + self.b_g)
                o = torch.sigmoid(x[t] @ self.W_xo.T + h @ self.W_ho.T + self.b_o)
                c = f * c + i * g
                h = o * torch.tanh(c)
            elif self.kind == "GRU":
                r = torch.sigmoid(x[t] @ self.W_xr.T + h @ self.W_hr.T + self.b_r)
                z = torch.sigmoid(x[t] @ self.W_xz.T + h @ self.W_hz.T + self.b_z)
                n = torch.tanh(x[t] @ self.W_xn.T + self.b_xn + r * (h @ self.W_hn.T + self.b_hn))
                h = (1 - z) * n + z * h
            else:
                h = torch.tanh(x[t] @ self.W_xh.T + h @ self.W_hh.T + self.b_h)
            outputs.append(h)
        state = (h[None], c[None]) if self.kind == "LSTM" else h[None]
        return torch.stack(outputs), state


class _OutputOnly(nn.Module):
    """A layer that returns only its output (L, N, H): what CUDA-graph capture and the timing
    loops need."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)[0]


def _autocast(device: torch.device, precision: str, cache_enabled: bool = True):
    if precision == FLOAT32:
        return contextlib.nullcontext()
    if precision == BF16:
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled)
    raise ValueError(f"expected precision {FLOAT32!r} or {BF16!r}, got {precision!r}")


def _sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def build_layer(variant: str, kind: str, reference: nn.Module, sample: Tensor,
                precision: str = FLOAT32, compile_backend: str = "inductor") -> nn.Module:
    """A module computing ``reference``'s function as ``variant`` does; it returns the output only.

    Args:
        variant: a key of :data:`VARIANTS`.
        kind: "RNN", "LSTM" or "GRU".
        reference: the ``torch.nn`` layer whose weights every variant copies (on the device).
        sample: an input like the ones to come (L, N, H_in); CUDA-graph capture replays its
            shape and its ``requires_grad``.
        precision: ``"float32"`` or ``"bf16-autocast"`` (matters for CUDA-graph capture).
        compile_backend: ``torch.compile``'s backend; the tests use "eager" to skip inductor.
    """
    if variant == BASELINE:
        return _OutputOnly(reference)
    if variant == "naive":
        return _OutputOnly(NaiveLayer(kind, reference))
    ours = getattr(models, kind)(reference.input_size, reference.hidden_size).to(sample.device)
    ours.load_state_dict(reference.state_dict())
    layer = _OutputOnly(ours)
    if variant == "companion":
        return layer
    # torch.compile refuses a mode together with a backend other than its default
    backend = {} if compile_backend == "inductor" else {"backend": compile_backend}
    if variant == "companion+compile":
        return torch.compile(layer, **backend)
    if variant == "companion+compile-ro":
        return torch.compile(layer, mode="reduce-overhead", **backend)
    if variant == "companion+cudagraphs":
        if sample.device.type != "cuda":
            raise RuntimeError("companion+cudagraphs: CUDA graphs need a CUDA device")
        # Capture under the same autocast as the replays; autocast's weight cache must be off.
        with _autocast(sample.device, precision, cache_enabled=False):
            return torch.cuda.make_graphed_callables(layer, (sample,))
    raise ValueError(f"build_layer: expected a variant in {tuple(VARIANTS)}, got {variant!r}")


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------


def time_interleaved(runners: Mapping[str, Callable[[], Any]], repeats: int, warmup: int,
                     sync: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Seconds per call of every runner, interleaved: ``warmup`` untimed rounds, then
    ``repeats`` timed ones; round r starts with runner r mod K, so none always runs first."""
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            sync()
            start = time.perf_counter()
            runners[name]()
            sync()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def _forward_backward(layer: nn.Module, x: Tensor, device: torch.device, precision: str,
                      mark_step: bool) -> Callable[[], Tensor]:
    """One forward+backward of ``layer`` on ``x``; returns the output, detached."""
    params = list(layer.parameters())

    def run() -> Tensor:
        for p in params:
            p.grad = None
        if mark_step:  # cudagraph trees: a new iteration, the previous outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with _autocast(device, precision):
            out = layer(x)
        out.float().sum().backward()
        return out.detach()

    return run


def _summary(times: Sequence[float]) -> dict[str, Any]:
    ms = sorted(t * 1e3 for t in times)
    q1, _, q3 = statistics.quantiles(ms, n=4) if len(ms) > 1 else (ms[0], ms[0], ms[0])
    return {"median_ms": _sig(statistics.median(ms)), "q1_ms": _sig(q1), "q3_ms": _sig(q3),
            "times_ms": [_sig(t) for t in ms]}


def _sig(value: float, digits: int = 4) -> float:
    """``value`` rounded to ``digits`` significant digits (timings are not worth more)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


def _variants_for(device: torch.device, compile: bool, shape_compiles: bool) -> list[tuple[str, str]]:
    """(variant, precision) pairs to time at one shape on ``device``."""
    pairs = []
    for variant, devices in VARIANTS.items():
        if device.type not in devices:
            continue
        if variant in COMPILED and not (compile and shape_compiles):
            continue
        pairs.append((variant, FLOAT32))
    if device.type == "cuda":
        pairs += [(v, BF16) for v, _ in list(pairs) if v in BF16_VARIANTS]
    return pairs


def _graph_count() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def bench_forward_backward(kind: str, shape: Shape, device: torch.device,
                           variants: Sequence[tuple[str, str]], repeats: int, warmup: int,
                           group: str, compile_backend: str = "inductor",
                           log: Callable[[str], None] = print) -> tuple[list[dict], dict[str, nn.Module]]:
    """Time forward+backward of every (variant, precision) at one shape, interleaved.

    Returns the rows (one per pair, ``ratio_to_torch`` filled in later by :func:`_add_ratios`)
    and the compiled layers by variant name, for :func:`probe_recompilation`.
    """
    if any(variant in COMPILED for variant, _ in variants):
        # Dynamo keeps at most recompile_limit (8) graphs per code object, and every compiled
        # layer runs the same code: start each shape afresh so that no variant falls back to eager.
        torch._dynamo.reset()
    torch.manual_seed(0)
    reference = getattr(nn, kind)(shape.input_size, shape.hidden_size).to(device)
    x = torch.randn(shape.length, shape.batch, shape.input_size, device=device)
    sync = _sync(device)
    runners, rows, compiled = {}, {}, {}
    expected = None
    for variant, precision in variants:
        key = f"{variant}|{precision}"
        row = {"section": "forward_backward", "group": group, "kind": kind, "variant": variant,
               "precision": precision, **asdict(shape)}
        rows[key] = row
        try:
            layer = build_layer(variant, kind, reference, x, precision, compile_backend)
            run = _forward_backward(layer, x, device, precision, variant == "companion+compile-ro")
            graphs = _graph_count()
            sync()
            start = time.perf_counter()
            out = run()  # the first call: compiles, captures or warms caches
            sync()
            row["first_call_ms"] = _sig((time.perf_counter() - start) * 1e3)
            if variant in COMPILED:
                row["graphs_compiled"] = _graph_count() - graphs
                compiled[variant] = layer
            out = out.float()
            if expected is None:  # torch.nn float32 comes first
                expected = out
            row["max_abs_diff"] = _sig(float((out - expected).abs().max()), 3)
            runners[key] = run
        except Exception as err:  # a variant that cannot run here must not stop the others
            row["skipped"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            log(f"  {kind} {shape.label()} {variant} {precision}: skipped ({row['skipped']})")
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exc()
    times = time_interleaved(runners, repeats, warmup, sync)
    for key, t in times.items():
        rows[key].update(_summary(t))
        median_s = rows[key]["median_ms"] / 1e3
        rows[key]["sequences_per_s"] = _sig(shape.batch / median_s)
        if rows[key]["variant"] in COMPILED:
            rows[key]["compile_s"] = _sig(rows[key]["first_call_ms"] / 1e3 - median_s, 3)
    return list(rows.values()), compiled


def probe_recompilation(kind: str, variant: str, layer: nn.Module, shape: Shape,
                        device: torch.device, new_length: int) -> dict:
    """Call a compiled layer at a sequence length it has not seen: does it compile again, and
    how long does that first call take compared with the next one?"""
    x = torch.randn(new_length, shape.batch, shape.input_size, device=device)
    run = _forward_backward(layer, x, device, FLOAT32, variant == "companion+compile-ro")
    sync = _sync(device)
    graphs = _graph_count()
    seconds = []
    for _ in range(2):
        sync()
        start = time.perf_counter()
        run()
        sync()
        seconds.append(time.perf_counter() - start)
    new_graphs = _graph_count() - graphs
    limit = getattr(torch._dynamo.config, "recompile_limit", None)
    if limit is None:
        limit = getattr(torch._dynamo.config, "cache_size_limit", None)
    return {"kind": kind, "variant": variant, **asdict(shape), "new_length": new_length,
            "recompiled": new_graphs > 0, "graphs_compiled": new_graphs,
            "first_call_s": _sig(seconds[0], 3), "second_call_ms": _sig(seconds[1] * 1e3),
            "recompile_limit": limit}


class CharLM(nn.Module):
    """A character-level language model: embedding, one recurrent layer, linear read-out.

    ``layer`` maps (L, N, E) to (L, N, H) (an :class:`_OutputOnly` or a graphed one). Input ids
    (N, L) -> logits (N, L, V).
    """

    def __init__(self, layer: nn.Module, vocab: int, embedding: int, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding)
        self.layer = layer
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids: Tensor) -> Tensor:
        e = self.embedding(ids.t())  # time-major inside, as the layers expect
        return self.head(self.layer(e)).transpose(0, 1)


def bench_training(kind: str, device: torch.device, variants: Sequence[tuple[str, str]],
                   train: Mapping[str, int], repeats: int, warmup: int,
                   compile_backend: str = "inductor",
                   log: Callable[[str], None] = print) -> list[dict]:
    """Training steps per second of the char-LM for every (variant, precision): forward,
    cross-entropy, backward and an Adam step, on random token ids (speed does not depend on
    the text)."""
    n, length, vocab, emb, hidden = (train[k] for k in ("batch", "length", "vocab", "embedding", "hidden"))
    torch.manual_seed(0)
    reference = getattr(nn, kind)(emb, hidden).to(device)
    ids = torch.randint(vocab, (n, length + 1), device=device)
    x, y = ids[:, :-1], ids[:, 1:]
    sample = torch.randn(length, n, emb, device=device, requires_grad=True)
    sync = _sync(device)
    runners, rows = {}, {}
    for variant, precision in variants:
        key = f"{variant}|{precision}"
        row = {"section": "training", "kind": kind, "variant": variant, "precision": precision,
               "batch": n, "length": length, "vocab": vocab, "embedding": emb, "hidden_size": hidden}
        rows[key] = row
        try:
            torch.manual_seed(1)  # the same embedding and read-out for every variant
            model = CharLM(build_layer(variant, kind, reference, sample, precision, compile_backend),
                           vocab, emb, hidden).to(device)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            mark = variant == "companion+compile-ro"

            def step(model=model, optimizer=optimizer, precision=precision, mark=mark) -> None:
                optimizer.zero_grad(set_to_none=True)
                if mark:
                    torch.compiler.cudagraph_mark_step_begin()
                with _autocast(device, precision):
                    logits = model(x)
                loss = F.cross_entropy(logits.float().reshape(-1, vocab), y.reshape(-1))
                loss.backward()
                optimizer.step()

            start = time.perf_counter()
            step()
            sync()
            row["first_call_ms"] = _sig((time.perf_counter() - start) * 1e3)
            runners[key] = step
        except Exception as err:
            row["skipped"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            log(f"  train {kind} {variant} {precision}: skipped ({row['skipped']})")
    times = time_interleaved(runners, repeats, warmup, sync)
    for key, t in times.items():
        rows[key].update(_summary(t))
        median_s = rows[key]["median_ms"] / 1e3
        rows[key]["sequences_per_s"] = _sig(n / median_s)
        rows[key]["tokens_per_s"] = _sig(n * length / median_s)
    return list(rows.values())


def _add_ratios(rows: list[dict], keys: Sequence[str]) -> None:
    """``ratio_to_torch``: median time over ``torch.nn``'s at the same shape and precision."""
    base = {tuple(r[k] for k in keys) + (r["precision"],): r["median_ms"]
            for r in rows if r["variant"] == BASELINE and "median_ms" in r}
    for r in rows:
        ref = base.get(tuple(r[k] for k in keys) + (r["precision"],))
        if "median_ms" in r and ref:
            r["ratio_to_torch"] = _sig(r["median_ms"] / ref, 3)


# ------------------------------------------------------------------------------------------------
# The whole run
# ------------------------------------------------------------------------------------------------


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def _device_info(device: torch.device) -> dict:
    info = {
        "type": device.type,
        "name": _cpu_name() if device.type == "cpu" else device_name(device),
        "cpu": _cpu_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        info.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                    tf32_cudnn=torch.backends.cudnn.allow_tf32,
                    memory_gib=round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1))
    return info


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def run_suite(device: torch.device, plan: Plan, compile: bool = False,
              compile_backend: str = "inductor", log: Callable[[str], None] = print) -> dict:
    """Measure everything in ``plan`` on ``device``; return the results (see the module doc)."""
    started = time.perf_counter()
    results: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": _device_info(device),
        "load_average_before": _load_average(),
        "settings": {"repeats": plan.repeats, "warmup": plan.warmup, "compile": compile,
                     "compile_backend": compile_backend if compile else None,
                     "inductor_caches": None, "train": dict(plan.train),
                     "loss": "sum of the outputs; the input does not require a gradient"},
        "forward_backward": [], "training": [], "recompilation": [], "notes": [],
    }
    notes = results["notes"]
    if compile and compile_backend == "inductor":
        import torch._inductor.config as inductor_config

        results["settings"]["inductor_caches"] = not inductor_config.force_disable_caches
    skipped = [v for v, d in VARIANTS.items() if device.type not in d]
    if skipped:
        notes.append(f"{', '.join(skipped)}: CUDA only, not run on {device.type}")
    if device.type != "cuda":
        notes.append(f"{BF16}: timed on CUDA only, not run on {device.type}")
    if not compile:
        notes.append("compiled variants not run (pass --compile)")
    fb = results["forward_backward"]
    jobs = [(s, "goal") for s in plan.goal_shapes] + [(s, "grid") for s in plan.grid_shapes
                                                      if s not in plan.goal_shapes]
    for kind in plan.kinds:
        probed = False
        for shape, group in jobs:
            compiles = kind in plan.compile_kinds and shape in plan.compile_shapes
            variants = _variants_for(device, compile, compiles)
            if group == "grid":
                variants = [(v, p) for v, p in variants if v not in COMPILED]
            log(f"{kind} {shape.label()} [{group}]: {len(variants)} variants")
            rows, compiled = bench_forward_backward(kind, shape, device, variants, plan.repeats,
                                                    plan.warmup, group, compile_backend, log)
            fb.extend(rows)
            if compiled and not probed:
                for variant, layer in compiled.items():
                    probe = probe_recompilation(kind, variant, layer, shape, device, shape.length + 10)
                    results["recompilation"].append(probe)
                    log(f"  {variant} at new length {probe['new_length']}: recompiled="
                        f"{probe['recompiled']}, first call {probe['first_call_s']} s")
                probed = True
    _add_ratios(fb, ("kind", "batch", "length", "input_size", "hidden_size"))
    train_variants = [(v, p) for v, p in _variants_for(device, False, False)]
    for kind in plan.train_kinds:
        log(f"training {kind} char-LM {plan.train}")
        results["training"].extend(bench_training(kind, device, train_variants, plan.train,
                                                  plan.repeats, plan.warmup, compile_backend, log))
    _add_ratios(results["training"], ("kind",))
    if compile:
        notes.append("the char-LM training is timed eagerly only (compiling it would add "
                     "another compile per kind)")
    results["goals"] = goal_report(results)
    results["load_average_after"] = _load_average()
    results["duration_s"] = round(time.perf_counter() - started, 1)
    return results


# ------------------------------------------------------------------------------------------------
# Reading results back
# ------------------------------------------------------------------------------------------------

_REQUIRED = {"schema", "created", "device", "settings", "forward_backward", "training", "goals"}
_ROW_KEYS = {"kind", "variant", "precision", "batch", "length", "input_size", "hidden_size"}


def validate_results(results: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming what is missing if ``results`` is not a results file's content."""
    missing = _REQUIRED - set(results)
    if missing:
        raise ValueError(f"benchmark results: expected keys {sorted(_REQUIRED)}, missing {sorted(missing)}")
    if results["schema"] != SCHEMA_VERSION:
        raise ValueError(f"benchmark results: expected schema {SCHEMA_VERSION}, got {results['schema']}")
    for key in ("type", "name", "torch"):
        if key not in results["device"]:
            raise ValueError(f"benchmark results: expected device.{key}")
    for i, row in enumerate(results["forward_backward"]):
        lacking = _ROW_KEYS - set(row)
        if lacking:
            raise ValueError(f"benchmark results: forward_backward row {i} lacks {sorted(lacking)}")
        if "median_ms" not in row and "skipped" not in row:
            raise ValueError(f"benchmark results: forward_backward row {i} has neither median_ms nor skipped")


def load_results(path: str | os.PathLike) -> dict:
    """Read and check a results file written by this script."""
    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    validate_results(results)
    return results


def goal_report(results: Mapping[str, Any]) -> list[dict]:
    """The goals of :data:`GOALS` for the results' device, each with the measured ratio (None if
    that variant was not run) and whether it is met."""
    device = results["device"]["type"]
    report = []
    for goal in GOALS:
        if goal.device != device:
            continue
        ratio = None
        for row in results["forward_backward"]:
            if (row["kind"], row["variant"], row["precision"]) == (goal.kind, goal.variant, FLOAT32) \
                    and Shape.of(row) == goal.shape and "ratio_to_torch" in row:
                ratio = row["ratio_to_torch"]
        report.append({"device": device, "kind": goal.kind, "variant": goal.variant,
                       **asdict(goal.shape), "max_ratio": goal.max_ratio, "ratio": ratio,
                       "met": None if ratio is None else ratio <= goal.max_ratio})
    return report


def batch_curve(results: Mapping[str, Any], kind: str, variant: str = BASELINE,
                hidden_size: int = 256, length: int = 50, input_size: int = 64,
                precision: str = FLOAT32) -> dict[int, float]:
    """Batch size -> median forward+backward ms, for one kind, variant and (L, H_in, H)."""
    curve = {}
    for row in results["forward_backward"]:
        if (row["kind"], row["variant"], row["precision"]) == (kind, variant, precision) \
                and (row["length"], row["input_size"], row["hidden_size"]) == (length, input_size, hidden_size) \
                and "median_ms" in row:
            curve[row["batch"]] = row["median_ms"]
    return dict(sorted(curve.items()))


def crossover_batch(cpu: Mapping[str, Any], gpu: Mapping[str, Any], kind: str = "LSTM",
                    variant: str = BASELINE, gpu_variant: str | None = None,
                    hidden_size: int = 256, length: int = 50, input_size: int = 64) -> int | None:
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
            f"{variant} L={length} H_in={input_size} H={hidden_size}, got CPU {sorted(cpu_curve)} "
            f"and GPU {sorted(gpu_curve)}"
        )
    crossover = None
    for batch in reversed(common):
        if gpu_curve[batch] < cpu_curve[batch]:
            crossover = batch
        else:
            break
    return crossover


def format_table(results: Mapping[str, Any], section: str = "forward_backward",
                 group: str | None = None) -> str:
    """The rows of one section as a text table; ratios are to ``torch.nn``."""
    goals = {(g["kind"], g["variant"], g["batch"], g["length"], g["input_size"], g["hidden_size"]):
             g["max_ratio"] for g in results.get("goals", [])}
    lines = [f"{'kind':5} {'N':>4} {'L':>4} {'H_in':>4} {'H':>4}  {'variant':22} {'precision':13} "
             f"{'median ms':>10} {'ratio':>6} {'goal':>5}"
             + ("  tokens/s" if section == "training" else "")]
    for r in results[section]:
        if group is not None and r.get("group") != group:
            continue
        shape = (r["batch"], r["length"], r.get("input_size", r.get("embedding")), r["hidden_size"])
        goal = goals.get((r["kind"], r["variant"], *shape)) if section == "forward_backward" else None
        if "median_ms" not in r:
            timing = f"{'skipped':>10} {'':>6}"
        else:
            ratio = r.get("ratio_to_torch")
            timing = f"{r['median_ms']:10.3g} {ratio if ratio is not None else float('nan'):6.2f}"
        line = (f"{r['kind']:5} {shape[0]:4d} {shape[1]:4d} {shape[2]:4d} {shape[3]:4d}  "
                f"{r['variant']:22} {r['precision']:13} {timing} {goal if goal else '':>5}")
        if section == "training" and "tokens_per_s" in r:
            line += f"  {r['tokens_per_s']:8.3g}"
        lines.append(line)
    return "\n".join(lines)


_SHORT = {"companion": "eager", "companion+compile": "compiled", "companion+cudagraphs": "CUDA graphs",
          "companion+compile-ro": "reduce-overhead", "naive": "naive", "torch.nn": "torch.nn"}
_MARKERS = {"torch.nn": "o", "companion": "s", "naive": "v", "companion+compile": "D",
            "companion+cudagraphs": "^", "companion+compile-ro": "P"}


def plot_ratios(results: Mapping[str, Any], kinds: Sequence[str] = ("LSTM", "GRU"),
                precision: str = FLOAT32, axes=None):
    """Forward+backward time over ``torch.nn``'s, per variant, at the goal shapes; one panel per
    kind, log scale, the goals of the variants present drawn as dashed segments. Returns the
    figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    from companion.plots import COLORS

    rows = [r for r in results["forward_backward"]
            if r.get("group") == "goal" and r["precision"] == precision and "ratio_to_torch" in r]
    shapes = sorted({Shape.of(r) for r in rows}, key=lambda s: (s.length, s.hidden_size, s.batch))
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    if axes is None:
        fig, axes = plt.subplots(1, len(kinds), figsize=(10, 3.8), sharey=True, squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    goals = [g for g in (results.get("goals") or goal_report(results)) if g["variant"] in variants]
    ratios = [r["ratio_to_torch"] for r in rows] + [g["max_ratio"] for g in goals]
    ticks = [t for t in (0.1, 0.2, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 50, 100)
             if min(ratios) / 1.5 <= t <= max(ratios) * 1.5]
    for ax, kind in zip(axes, kinds):
        color = COLORS.get(kind.lower(), "black")
        for j, variant in enumerate(variants):
            xs, ys = [], []
            for k, shape in enumerate(shapes):
                for r in rows:
                    if r["kind"] == kind and r["variant"] == variant and Shape.of(r) == shape:
                        xs.append(k + (j - (len(variants) - 1) / 2) * 0.14)
                        ys.append(r["ratio_to_torch"])
            face = COLORS["baseline"] if variant == BASELINE else color
            ax.plot(xs, ys, _MARKERS.get(variant, "x"), color=face, ms=7, label=variant,
                    mfc="white" if variant == "naive" else face)
        # one dashed segment per shape and bound, naming the variants it applies to
        bounds: dict[tuple[Shape, float], list[str]] = {}
        for g in goals:
            if g["kind"] == kind and Shape.of(g) in shapes:
                bounds.setdefault((Shape.of(g), g["max_ratio"]), []).append(_SHORT[g["variant"]])
        for (shape, bound), names in bounds.items():
            k = shapes.index(shape)
            ax.hlines(bound, k - 0.42, k + 0.42, colors=color, linestyles="--", lw=1)
            label = f"{bound}x:" + ("\n" if len(names) > 1 else " ") + ", ".join(names)
            ax.annotate(label, (k - 0.42, bound), fontsize=7, ha="left", va="bottom", color=color)
        ax.axhline(1, color=COLORS["baseline"], lw=0.8)
        ax.set_xticks(range(len(shapes)))
        ax.set_xticklabels([f"{s.batch}, {s.length},\n{s.input_size}, {s.hidden_size}" for s in shapes],
                           fontsize=8)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(-0.6, len(shapes) - 0.4)
        ax.set_title(f"{kind} (dashed: goals)", color=color, fontsize=10)
        ax.set_xlabel("N, L, H_in, H")
    axes[0].set_ylabel("forward+backward time\nrelative to torch.nn")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", bbox_to_anchor=(0.98, 1.0), ncol=len(labels),
               fontsize=8, frameon=False)
    device = results["device"]
    fig.suptitle(f"{device['name']} ({device['type']}), torch {device['torch'].split('+')[0]}, "
                 f"{precision}", fontsize=9, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def plot_batch_curves(curves: Mapping[str, tuple[Mapping[int, float], str, str]], ax=None,
                      title: str = "Forward+backward time per sequence"):
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
        ax.plot(batches, [curve[b] / b for b in batches], style, color=color, marker="o", ms=4,
                label=label)
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


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


def _write_csv(results: Mapping[str, Any], path: str | os.PathLike) -> None:
    rows = [r for section in ("forward_backward", "training") for r in results[section]]
    columns = ["section", "group", "kind", "variant", "precision", "batch", "length", "input_size",
               "embedding", "vocab", "hidden_size", "median_ms", "q1_ms", "q3_ms", "ratio_to_torch",
               "sequences_per_s", "tokens_per_s", "first_call_ms", "compile_s", "max_abs_diff", "skipped"]
    device = results["device"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["device", "device_name", "torch"] + columns,
                                extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({"device": device["type"], "device_name": device["name"],
                             "torch": device["torch"], **r})


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description="Time RNN/LSTM/GRU variants (torch.nn, companion, naive, compiled, CUDA "
                    "graphs) on this device; print a table and write JSON.")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a few shapes and repeats; prints only unless --out")
    size.add_argument("--tiny", action="store_true", help="tiny shapes, seconds (the tests)")
    parser.add_argument("--compile", action="store_true",
                        help="also time companion under torch.compile (slow to compile on a CPU)")
    parser.add_argument("--compile-cache", action="store_true",
                        help="let inductor reuse its on-disk cache (compile times then are not cold)")
    parser.add_argument("--compile-backend", default="inductor", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per variant (median taken)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 in CUDA matmuls and cuDNN")
    parser.add_argument("--out", default=None, help="JSON file to write (default book/data/11_bench_<device>.json)")
    parser.add_argument("--csv", default=None, help="also write the rows as CSV")
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.compile and not args.compile_cache and args.compile_backend == "inductor":
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True
    preset = "tiny" if args.tiny else "quick" if args.quick else "full"
    plan = make_plan(device, preset, args.repeats, args.warmup)
    print(f"torch {torch.__version__} on {device} ({_device_info(device)['name']}), "
          f"{torch.get_num_threads()} threads, load average {_load_average()}")
    print(f"preset {preset}: median of {plan.repeats} after {plan.warmup} warm-up runs, "
          f"variants interleaved")
    results = run_suite(device, plan, args.compile, args.compile_backend)
    results["settings"].update(preset=preset, argv=list(argv if argv is not None else sys.argv[1:]))
    print("\nforward+backward (ratio = time / torch.nn's; goal = the issue's bound)")
    print(format_table(results))
    print("\ntraining the char-LM (one Adam step per call)")
    print(format_table(results, "training"))
    for probe in results["recompilation"]:
        print(f"\n{probe['variant']} {probe['kind']}: a new length {probe['new_length']} "
              f"recompiled={probe['recompiled']} ({probe['first_call_s']} s for its first call)")
    print("\ngoals:")
    for g in results["goals"]:
        verdict = "not run" if g["met"] is None else "met" if g["met"] else "MISSED"
        print(f"  {g['kind']} {g['variant']} at N={g['batch']} L={g['length']} H={g['hidden_size']}: "
              f"{g['ratio']} <= {g['max_ratio']}? {verdict}")
    print(f"\nload average before {results['load_average_before']}, after "
          f"{results['load_average_after']}; {results['duration_s']} s")
    out = args.out
    if out is None and preset == "full":
        out = Path(__file__).resolve().parents[1] / "book" / "data" / f"11_bench_{device.type}.json"
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    if args.csv:
        _write_csv(results, args.csv)
        print(f"wrote {args.csv}")
    return results


if __name__ == "__main__":
    main()
