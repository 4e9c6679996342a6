r"""The book's speed benchmark: RNN, LSTM and GRU layers, timed the same way on any device.

One command times, on the current device and in one process,

1. **forward+backward** of one layer (the loss is the sum of the outputs, the input does not
   require a gradient) for several *variants* that compute the same function from the same
   weights (``companion.benchmark.VARIANTS`` says what each is): ``torch.nn``, ``companion``
   (the readable layer), ``bare`` (the same equations as bare tensor operations, nothing else),
   ``companion+fused`` (the opt-in fast path, ``companion.fused``), ``naive`` (one product per
   gate; batch grid only), and opt-in ``companion+compile`` (``--compile``), and on CUDA
   ``companion+cudagraphs`` and ``companion+compile-ro``, also under bfloat16 autocast;
2. the **per-step floor**: the same at N=1, H_in=1, H=1, where there is almost no arithmetic
   and the time is the fixed cost of the operations each step makes;
3. whether the fused (or compiled) variants **compile again** at sequence lengths 50, 100, 200;
4. **training throughput** of a small character-level language model (embedding, one recurrent
   layer, linear read-out, cross-entropy, an Adam step) in sequences/s and tokens/s.

Every measurement records the minimum, median and maximum of ``--repeats`` runs after
``--warmup`` untimed ones; the variants of one shape are interleaved, and the one that goes first
rotates, so background load hits all of them alike. CUDA (and MPS) work is synchronised before
the clock is read. Each variant's output is compared with ``torch.nn``'s (``max_abs_diff``).

Each run records, besides the threads, the torch version and the settings, every timed repeat
with its wall time and the timing thread's CPU time, and what else used the machine during the
run (``companion.benchmark.ContentionMonitor``: other processes' CPU time per core, the load
averages before and after). It ends with ``companion.benchmark.check_conditions``, which says
which measurement would make ``companion.benchmark.load_results`` (and so the book's tests and
chapters) refuse the file, and by how much. The results file's layout is in
``companion.benchmark``.

Usage, from the repository root::

    # the stored CPU results of the book, on a quiet machine: 1 and 2 threads, ~5 minutes
    python benchmarks/bench.py --device cpu --threads 1 2
    # writes book/data/11_bench_cpu_t1.json and book/data/11_bench_cpu_t2.json
    python benchmarks/bench.py --device cuda --out book/data/11_bench_cuda.json
    python benchmarks/bench.py --device cpu --threads 1 --quick   # 3 repeats; prints only

Options: ``--device {auto,cpu,cuda,mps}``, ``--quick`` (the same shapes, 3 repeats), ``--tiny``
(seconds, for the tests), ``--threads N [N ...]`` (one run and one file per count),
``--compile`` (also the whole companion layer under ``torch.compile``, at N=32, H=32, L=50, and
its recompilation at L=100 and 200; with inductor's on-disk cache disabled, so cold, unless
``--compile-cache``), ``--repeats N``, ``--warmup N``, ``--tf32``, ``--out PATH``, ``--csv PATH``.

About ``torch.compile`` on a recurrent layer: Dynamo unrolls the Python loop over time, so the
graph (and its compile time) grows with the sequence length T, and every new L compiles a new
graph, up to ``torch._dynamo.config.recompile_limit`` lengths, after which the layer runs
eagerly. ``companion.fused`` compiles nothing, so it has nothing to recompile.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
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
from variants import DEVICES, KINDS, CharLM, build_layer, precision_scope

from companion.benchmark import (
    BASELINE,
    BF16,
    CPU_SHAPES,
    FLOAT32,
    FLOOR_SHAPE,
    GPU_GOAL_SHAPE,
    ContentionMonitor,
    Shape,
    conditions_report,
    cpu_name,
    finish_results,
    format_table,
    goals_section,
    new_results,
    summarize,
    timed,
)
from companion.device import device_name, pick_device
from companion.timing import round_sig

COMPILED = ("companion+compile", "companion+compile-ro")
#: Variants timed at every shape; "naive" joins them on the batch grid only.
MAIN = ("torch.nn", "companion", "bare", "companion+fused")
GRID = ("torch.nn", "companion", "naive", "companion+fused")
TRAIN = ("torch.nn", "companion", "companion+fused")
#: Variants also timed under bfloat16 autocast, on CUDA.
BF16_VARIANTS = ("torch.nn", "companion", "companion+cudagraphs", "companion+compile-ro")
#: The sequence lengths at which fused and compiled variants are checked for recompilation.
PROBE_LENGTHS = (50, 100, 200)


@dataclass(frozen=True)
class Plan:
    """What one run measures."""

    kinds: tuple[str, ...]
    goal_shapes: tuple[Shape, ...]  # MAIN variants
    floor_shapes: tuple[Shape, ...]  # MAIN variants, nearly no arithmetic
    grid_shapes: tuple[Shape, ...]  # GRID variants, LSTM only: batch curves and the crossover
    compile_shape: Shape  # companion+compile, with --compile
    probe_lengths: tuple[int, ...]
    train_kinds: tuple[str, ...]
    train: dict[str, int]  # batch, length, vocab, embedding, hidden
    repeats: int
    warmup: int


def _grid(
    batches: Iterable[int], hiddens: Iterable[int], length: int = 50, input_size: int = 64
) -> tuple[Shape, ...]:
    return tuple(Shape(b, length, input_size, h) for h in hiddens for b in batches)


def make_plan(
    device: torch.device,
    preset: str = "full",
    repeats: int | None = None,
    warmup: int | None = None,
) -> Plan:
    """The shapes and settings of a ``preset``: "full", "quick" (the same shapes, 3 repeats)
    or "tiny" (the tests')."""
    shapes = (*CPU_SHAPES, GPU_GOAL_SHAPE) if device.type == "cuda" else CPU_SHAPES
    lm = {"batch": 32, "length": 100, "vocab": 96, "embedding": 32, "hidden": 256}
    grid = _grid((1, 8, 64, 256), (64,))
    compile_shape = Shape(32, 50, 32, 32)
    if preset in ("full", "quick"):
        default_repeats, default_warmup = (11, 2) if preset == "full" else (3, 1)
        return Plan(
            ("LSTM", "GRU"),
            shapes,
            (FLOOR_SHAPE,),
            grid,
            compile_shape,
            PROBE_LENGTHS,
            KINDS,
            lm,
            repeats or default_repeats,
            warmup or default_warmup,
        )
    if preset == "tiny":
        tiny_lm = {"batch": 3, "length": 5, "vocab": 11, "embedding": 4, "hidden": 6}
        return Plan(
            ("LSTM", "GRU"),
            (Shape(4, 6, 3, 5), Shape(4, 12, 3, 5)),
            (Shape(1, 6, 1, 1),),
            # Two grid shapes that differ in more than one size: at these sizes every time is
            # fixed cost, so a larger batch alone need not take longer (nor a wider input).
            (Shape(1, 6, 2, 5), Shape(4, 24, 2, 5)),
            Shape(4, 6, 3, 5),
            (6, 9),
            ("LSTM",),
            tiny_lm,
            repeats or 5,
            warmup or 1,
        )
    raise ValueError(f"make_plan: expected preset 'full', 'quick' or 'tiny', got {preset!r}")


def _sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------


def time_interleaved(
    runners: Mapping[str, Callable[[], Any]],
    repeats: int,
    warmup: int,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, list[tuple[float, float]]]:
    """(wall seconds, CPU seconds of the timing thread) per call of every runner, interleaved:
    ``warmup`` untimed rounds, then ``repeats`` timed ones; round r starts with runner r mod K,
    so none always runs first."""
    names = list(runners)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for r in range(warmup + repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            sample = timed(runners[name], sync)
            if r >= warmup:
                times[name].append(sample)
    return times


def _forward_backward(
    layer: nn.Module, x: Tensor, device: torch.device, precision: str, mark_step: bool
) -> Callable[[], Tensor]:
    """One forward+backward of ``layer`` on ``x``; returns the output, detached."""
    params = list(layer.parameters())

    def run() -> Tensor:
        for p in params:
            p.grad = None
        if mark_step:  # cudagraph trees: a new iteration, the previous outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with precision_scope(device, precision):
            out = layer(x)
        out.float().sum().backward()
        return out.detach()

    return run


def _summary(samples: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """The stored samples and summaries of (wall, CPU) seconds per call."""
    return summarize([w for w, _ in samples], [c for _, c in samples])


def pairs(device: torch.device, variants: Sequence[str]) -> list[tuple[str, str]]:
    """(variant, precision) pairs to time on ``device``: float32, and on CUDA bfloat16 too."""
    found = [(v, FLOAT32) for v in variants if device.type in DEVICES[v]]
    if device.type == "cuda":
        found += [(v, BF16) for v, _ in list(found) if v in BF16_VARIANTS]
    return found


def _graph_count() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _first_call(run: Callable[[], Any], sync: Callable[[], None]) -> tuple[Any, float]:
    """``run()``'s result and how long the call took, in ms: the first call compiles, captures
    or warms caches, so the timed repeats leave it out."""
    sync()
    start = time.perf_counter()
    out = run()
    sync()
    return out, round_sig((time.perf_counter() - start) * 1e3)


def _skip_reason(err: Exception) -> str:
    """Why a variant was skipped, in one line: the error's type and first line."""
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def _training_step(
    model: nn.Module, batch: tuple[Tensor, Tensor], device: torch.device, precision: str, mark: bool
) -> Callable[[], None]:
    """One Adam step of the char-LM on ``batch`` (ids x (N, T), next ids y (N, T)):
    forward under ``precision``, cross-entropy, backward. ``mark`` starts a CUDA-graph step."""
    x, y = batch
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        if mark:
            torch.compiler.cudagraph_mark_step_begin()
        with precision_scope(device, precision):
            logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        optimizer.step()

    return step


def bench_forward_backward(
    kind: str,
    shape: Shape,
    device: torch.device,
    variants: Sequence[tuple[str, str]],
    repeats: int,
    warmup: int,
    group: str,
    compile_backend: str = "inductor",
    log: Callable[[str], None] = print,
) -> tuple[list[dict], dict[str, nn.Module]]:
    """Time forward+backward of every (variant, precision) at one shape, interleaved.

    Returns the rows (one per pair, ``ratio_to_torch`` filled in later by :func:`add_ratios`)
    and the layers by variant name, for :func:`probe_recompilation`.
    """
    if any(variant in COMPILED for variant, _ in variants):
        # Dynamo keeps at most recompile_limit graphs per code object, and every compiled
        # layer runs the same code: start each shape afresh so that no variant falls back.
        torch._dynamo.reset()
    torch.manual_seed(0)
    reference = getattr(nn, kind)(shape.input_size, shape.hidden_size).to(device)
    x = torch.randn(shape.length, shape.batch, shape.input_size, device=device)
    sync = _sync(device)
    runners, rows, layers = {}, {}, {}
    expected = None
    for variant, precision in variants:
        key = f"{variant}|{precision}"
        row = {
            "section": "forward_backward",
            "group": group,
            "kind": kind,
            "variant": variant,
            "precision": precision,
            **asdict(shape),
        }
        rows[key] = row
        try:
            layer = build_layer(variant, kind, reference, x, precision, compile_backend)
            run = _forward_backward(layer, x, device, precision, variant == "companion+compile-ro")
            graphs = _graph_count()
            out, row["first_call_ms"] = _first_call(run, sync)  # compiles, captures, warms
            row["graphs_compiled"] = _graph_count() - graphs
            layers[variant] = layer
            out = out.float()
            if expected is None:  # torch.nn float32 comes first
                expected = out
            row["max_abs_diff"] = round_sig(float((out - expected).abs().max()), 3)
            runners[key] = run
        except Exception as err:  # a variant that cannot run here must not stop the others
            row["skipped"] = _skip_reason(err)
            log(f"  {kind} {shape.label()} {variant} {precision}: skipped ({row['skipped']})")
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exc()
    times = time_interleaved(runners, repeats, warmup, sync)
    for key, t in times.items():
        rows[key].update(_summary(t))
        median_s = rows[key]["median_ms"] / 1e3
        rows[key]["sequences_per_s"] = round_sig(shape.batch / median_s)
        if rows[key]["variant"] in COMPILED:
            rows[key]["compile_s"] = round_sig(rows[key]["first_call_ms"] / 1e3 - median_s, 3)
    return list(rows.values()), layers


def probe_recompilation(
    kind: str,
    variant: str,
    layer: nn.Module,
    shape: Shape,
    device: torch.device,
    lengths: Sequence[int],
) -> dict:
    """Call a layer at several sequence lengths, twice each: how many graphs does each length
    compile, and how long does its first call take against the second?

    The graph count is Dynamo's, so it tells something only of a compiled variant. A variant
    that is never compiled (``companion+fused``) reads 0 unless something inside it compiles;
    for it the report (:func:`probe_line`) gives the first and second call times instead, which
    show whether a new length costs anything.
    """
    sync = _sync(device)
    probe = {
        "kind": kind,
        "variant": variant,
        **asdict(shape),
        "lengths": list(lengths),
        "graphs_compiled": [],
        "first_call_s": [],
        "second_call_ms": [],
    }
    for length in lengths:
        x = torch.randn(length, shape.batch, shape.input_size, device=device)
        run = _forward_backward(layer, x, device, FLOAT32, variant == "companion+compile-ro")
        graphs = _graph_count()
        seconds = []
        for _ in range(2):
            sync()
            start = time.perf_counter()
            run()
            sync()
            seconds.append(time.perf_counter() - start)
        probe["graphs_compiled"].append(_graph_count() - graphs)
        probe["first_call_s"].append(round_sig(seconds[0], 3))
        probe["second_call_ms"].append(round_sig(seconds[1] * 1e3))
    probe["recompilations"] = sum(1 for g in probe["graphs_compiled"][1:] if g > 0)
    limit = getattr(torch._dynamo.config, "recompile_limit", None)
    probe["recompile_limit"] = limit
    return probe


def probe_line(probe: Mapping[str, Any]) -> str:
    """One recompilation probe as a line of the report: graphs and recompilations for a
    compiled variant, the first and second call times for one that is never compiled (whose
    graph count would read 0 by construction)."""
    head = f"{probe['variant']} {probe['kind']} at L={probe['lengths']}: "
    if probe["variant"] in COMPILED:
        return head + (
            f"graphs compiled {probe['graphs_compiled']}, recompilations "
            f"{probe['recompilations']}, first calls {probe['first_call_s']} s"
        )
    return head + (
        f"not compiled; first calls {probe['first_call_s']} s, second calls "
        f"{probe['second_call_ms']} ms"
    )


def bench_training(
    kind: str,
    device: torch.device,
    variants: Sequence[tuple[str, str]],
    train: Mapping[str, int],
    repeats: int,
    warmup: int,
    compile_backend: str = "inductor",
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Training steps per second of the char-LM for every (variant, precision): forward,
    cross-entropy, backward and an Adam step, on random token ids (speed does not depend on
    the text)."""
    n, length, vocab, emb, hidden = (
        train[k] for k in ("batch", "length", "vocab", "embedding", "hidden")
    )
    torch.manual_seed(0)
    reference = getattr(nn, kind)(emb, hidden).to(device)
    ids = torch.randint(vocab, (n, length + 1), device=device)
    x, y = ids[:, :-1], ids[:, 1:]
    sample = torch.randn(length, n, emb, device=device, requires_grad=True)
    sync = _sync(device)
    runners, rows = {}, {}
    for variant, precision in variants:
        key = f"{variant}|{precision}"
        row = {
            "section": "training",
            "kind": kind,
            "variant": variant,
            "precision": precision,
            "batch": n,
            "length": length,
            "vocab": vocab,
            "embedding": emb,
            "hidden_size": hidden,
        }
        rows[key] = row
        try:
            torch.manual_seed(1)  # the same embedding and read-out for every variant
            layer = build_layer(variant, kind, reference, sample, precision, compile_backend)
            model = CharLM(layer, vocab, emb, hidden).to(device)
            mark = variant == "companion+compile-ro"
            step = _training_step(model, (x, y), device, precision, mark)
            _, row["first_call_ms"] = _first_call(step, sync)
            runners[key] = step
        except Exception as err:
            row["skipped"] = _skip_reason(err)
            log(f"  train {kind} {variant} {precision}: skipped ({row['skipped']})")
    times = time_interleaved(runners, repeats, warmup, sync)
    for key, t in times.items():
        rows[key].update(_summary(t))
        median_s = rows[key]["median_ms"] / 1e3
        rows[key]["sequences_per_s"] = round_sig(n / median_s)
        rows[key]["tokens_per_s"] = round_sig(n * length / median_s)
    return list(rows.values())


def add_ratios(rows: list[dict], keys: Sequence[str]) -> None:
    """``ratio_to_torch``: median time over ``torch.nn``'s at the same shape and precision."""
    base = {
        tuple(r[k] for k in keys) + (r["precision"],): r["median_ms"]
        for r in rows
        if r["variant"] == BASELINE and "median_ms" in r
    }
    for r in rows:
        ref = base.get(tuple(r[k] for k in keys) + (r["precision"],))
        if "median_ms" in r and ref:
            r["ratio_to_torch"] = round_sig(r["median_ms"] / ref, 3)


# ------------------------------------------------------------------------------------------------
# The whole run
# ------------------------------------------------------------------------------------------------


def _device_info(device: torch.device) -> dict:
    """The device's type, name and threads (and on CUDA its versions); ``new_results`` adds
    the versions, core count and affinity every timing file records."""
    info = {
        "type": device.type,
        "name": cpu_name() if device.type == "cpu" else device_name(device),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info.update(
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
            memory_gib=round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1),
        )
    return info


def _jobs(
    plan: Plan, device: torch.device, compile: bool
) -> list[tuple[str, Shape, str, list[tuple[str, str]]]]:
    """(kind, shape, group, variants) for every forward+backward measurement of ``plan``."""
    main = list(MAIN) + (
        [v for v in COMPILED if v != "companion+compile"]
        if device.type == "cuda" and compile
        else []
    )
    if device.type == "cuda":
        main.append("companion+cudagraphs")
    jobs = []
    for kind in plan.kinds:
        for shape in plan.goal_shapes:
            jobs.append((kind, shape, "goal", pairs(device, main)))
        for shape in plan.floor_shapes:
            jobs.append((kind, shape, "floor", pairs(device, MAIN)))
        if compile:
            variants = ("torch.nn", "companion", "companion+compile")
            jobs.append((kind, plan.compile_shape, "compile", pairs(device, variants)))
    jobs += [("LSTM", s, "grid", pairs(device, GRID)) for s in plan.grid_shapes]
    return jobs


def run_suite(
    device: torch.device,
    plan: Plan,
    compile: bool = False,
    compile_backend: str = "inductor",
    log: Callable[[str], None] = print,
) -> dict:
    """Measure everything in ``plan`` on ``device``; return the results (the layout is in
    ``companion.benchmark``)."""
    settings = {
        "repeats": plan.repeats,
        "warmup": plan.warmup,
        "compile": compile,
        "compile_backend": compile_backend if compile else None,
        "inductor_caches": None,
        "train": dict(plan.train),
        "loss": "sum of the outputs; the input does not require a gradient",
    }
    results = new_results("bench", settings, _device_info(device))
    results["recompilation"] = []
    with ContentionMonitor() as monitor:
        _measure(results, device, plan, compile, compile_backend, log)
    return finish_results(results, monitor)


def _measure(
    results: dict,
    device: torch.device,
    plan: Plan,
    compile: bool,
    compile_backend: str,
    log: Callable[[str], None],
) -> None:
    """Fill the sections of ``results`` with everything ``plan`` measures."""
    if compile and compile_backend == "inductor":
        import torch._inductor.config as inductor_config

        results["settings"]["inductor_caches"] = not inductor_config.force_disable_caches
    fb = results["forward_backward"]
    for kind, shape, group, variants in _jobs(plan, device, compile):
        log(f"{kind} {shape.label()} [{group}]: {len(variants)} variants")
        rows, layers = bench_forward_backward(
            kind, shape, device, variants, plan.repeats, plan.warmup, group, compile_backend, log
        )
        fb.extend(rows)
        probed = {(p["kind"], p["variant"]) for p in results["recompilation"]}
        for variant, layer in layers.items():
            if (
                (variant in COMPILED or variant == "companion+fused")
                and (kind, variant) not in probed
                and shape.length == plan.probe_lengths[0]
            ):
                probe = probe_recompilation(kind, variant, layer, shape, device, plan.probe_lengths)
                results["recompilation"].append(probe)
                log("  " + probe_line(probe))
    add_ratios(fb, ("group", "kind", "batch", "length", "input_size", "hidden_size"))
    for kind in plan.train_kinds:
        log(f"training {kind} char-LM {plan.train}")
        results["training"].extend(
            bench_training(
                kind,
                device,
                pairs(device, TRAIN),
                plan.train,
                plan.repeats,
                plan.warmup,
                compile_backend,
                log,
            )
        )
    add_ratios(results["training"], ("kind",))
    results["goals"] = goals_section(results)


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


def _write_csv(results: Mapping[str, Any], path: str | os.PathLike) -> None:
    rows = [r for section in ("forward_backward", "training") for r in results[section]]
    columns = [
        "section",
        "group",
        "kind",
        "variant",
        "precision",
        "batch",
        "length",
        "input_size",
        "embedding",
        "vocab",
        "hidden_size",
        "min_ms",
        "median_ms",
        "max_ms",
        "q1_ms",
        "q3_ms",
        "ratio_to_torch",
        "sequences_per_s",
        "tokens_per_s",
        "first_call_ms",
        "compile_s",
        "max_abs_diff",
        "skipped",
    ]
    device = results["device"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(
            f,
            fieldnames=["device", "device_name", "torch", "threads"] + columns,
            extrasaction="ignore",
        )
        writer.writeheader()
        for r in rows:
            writer.writerow(
                {
                    "device": device["type"],
                    "device_name": device["name"],
                    "torch": device["torch"],
                    "threads": device["threads"],
                    **r,
                }
            )


def out_path(
    out: str | None, device: torch.device, threads: int | None, several: bool, preset: str
) -> Path | None:
    """Where one run's JSON goes: ``--out`` (with ``_t<threads>`` before the suffix when there
    are several thread counts), else book/data/11_bench_<device>[_t<threads>].json for the
    full preset, else nowhere."""
    suffix = f"_t{threads}" if threads is not None and (several or out is None) else ""
    if out is not None:
        path = Path(out)
        return path.with_name(path.stem + (suffix if several else "") + path.suffix)
    if preset != "full":
        return None
    root = Path(__file__).resolve().parents[1]
    tag = suffix if device.type == "cpu" else ""
    return root / "book" / "data" / f"11_bench_{device.type}{tag}.json"


def _report(results: Mapping[str, Any]) -> None:
    print("\nforward+backward (ratio = median time / torch.nn's)")
    print(format_table(results))
    print("\ntraining the char-LM (one Adam step per call)")
    print(format_table(results, "training"))
    for p in results["recompilation"]:
        print("\n" + probe_line(p))
    print("\ngoals (verdict from the interquartile ranges):")
    for g in results["goals"]:
        print(
            f"  {g['kind']} {g['variant']} / {g['baseline']} at N={g['batch']} "
            f"L={g['length']} H={g['hidden_size']}: {g['ratio']} <= {g['max_ratio']}? "
            f"{g['verdict'] or 'not run'}"
        )
    print()
    print(conditions_report(results))


def _parser() -> argparse.ArgumentParser:
    """The command line; the module docstring says what each option does."""
    parser = argparse.ArgumentParser(
        description="Time RNN/LSTM/GRU variants (torch.nn, companion, bare, fused, naive, "
        "compiled, CUDA graphs) on this device; print a table and write JSON."
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="the same shapes with 3 repeats; prints only unless --out",
    )
    size.add_argument("--tiny", action="store_true", help="tiny shapes, seconds (the tests)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time the whole companion layer under torch.compile",
    )
    parser.add_argument(
        "--compile-cache",
        action="store_true",
        help="let inductor reuse its on-disk cache (compile times not cold)",
    )
    parser.add_argument("--compile-backend", default="inductor", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per variant")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[None],
        help="torch intra-op threads; several counts make one run each",
    )
    parser.add_argument("--tf32", action="store_true", help="allow TF32 in CUDA matmuls and cuDNN")
    parser.add_argument(
        "--out",
        default=None,
        help="JSON file to write (default book/data/11_bench_<device>_t<N>.json)",
    )
    parser.add_argument("--csv", default=None, help="also write the rows as CSV")
    parser.add_argument(
        "--note",
        action="append",
        default=[],
        help="a sentence for the file's notes, e.g. what else ran on the machine (repeatable)",
    )
    return parser


def _run_once(
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    device: torch.device,
    plan: Plan,
    preset: str,
    threads: int | None,
) -> dict:
    """One run of the suite at the current thread count: report it, and write what was asked."""
    print(
        f"torch {torch.__version__} on {device} ({_device_info(device)['name']}), "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()}"
    )
    print(
        f"preset {preset}: {plan.repeats} timed runs after {plan.warmup} warm-up runs, "
        f"variants interleaved"
    )
    results = run_suite(device, plan, args.compile, args.compile_backend)
    results["settings"].update(preset=preset, argv=list(argv if argv is not None else sys.argv[1:]))
    results["notes"] += args.note
    _report(results)
    out = out_path(args.out, device, threads, len(args.threads) > 1, preset)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    if args.csv:
        _write_csv(results, args.csv)
        print(f"wrote {args.csv}")
    return results


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run the benchmark as the command line asks; the results, one dict per thread count."""
    args = _parser().parse_args(argv)

    device = pick_device(args.device)
    if device.type == "cuda" and args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.compile and not args.compile_cache and args.compile_backend == "inductor":
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True
    preset = "tiny" if args.tiny else "quick" if args.quick else "full"
    plan = make_plan(device, preset, args.repeats, args.warmup)
    runs = []
    for threads in args.threads:
        if threads is not None:
            torch.set_num_threads(threads)
        runs.append(_run_once(args, argv, device, plan, preset, threads))
    return runs


if __name__ == "__main__":
    main()
