"""Precompute chapter 12's speed table: minGRU (scan and loop) against two GRUs, by length.

For every sequence length in LENGTHS and batch size in BATCHES (and at length 1024 for the
batch sizes in BATCH_SWEEP), time one forward and backward
pass (the loss is the sum of the outputs) of four one-layer models with H_in = H = 64:

- ``minGRU scan``: ``companion.models.MinGRU(mode="parallel")``, the chunked scan;
- ``minGRU loop``: the same layer with ``mode="sequential"``, a Python loop over time;
- ``nn.GRU``: PyTorch's fused GRU;
- ``GRU (companion)``: the GRU written from its equations, a Python loop over time.

The four are timed in turn within each round (interleaved, the first rotating), so that a change
in the machine's load hits all of them alike; every round is stored, with the wall time and the
timing thread's CPU time of each pass, and the table reads the median of ROUNDS rounds after one
warm-up call. The file is read back with ``companion.benchmark.load_results``, which refuses it
unless the run had its core to itself: it records the CPU time other processes used during the
run and the load averages before and after (``companion.benchmark.ContentionMonitor``).

The notebook ``book/12_gated_recurrences_today.ipynb`` imports ``time_models`` from this file to
re-time one point live.

    OMP_NUM_THREADS=1 .venv/bin/python book/scripts/12_speed_sweep.py   # on a quiet machine
    OMP_NUM_THREADS=1 .venv/bin/python book/scripts/12_speed_sweep.py --tiny --out /tmp/s.json

Output: ``book/data/12_speed_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from companion import benchmark
from companion import models as cm

HIDDEN = 64
LENGTHS = (64, 256, 1024, 4096)
BATCHES = (1, 32)
BATCH_SWEEP, BATCH_SWEEP_LENGTH = (2, 4, 8, 16), 1024  # where, between 1 and 32, is the switch?
ROUNDS = 7
MODELS = ("minGRU scan", "minGRU loop", "nn.GRU", "GRU (companion)")
OUT = Path(__file__).resolve().parents[1] / "data" / "12_speed_cpu.json"


def build(name: str, hidden: int = HIDDEN) -> nn.Module:
    """One of MODELS as a one-layer, time-major layer with H_in = H = ``hidden``."""
    if name == "minGRU scan":
        return cm.MinGRU(hidden, hidden, mode="parallel")
    if name == "minGRU loop":
        return cm.MinGRU(hidden, hidden, mode="sequential")
    if name == "nn.GRU":
        return nn.GRU(hidden, hidden)
    return cm.GRU(hidden, hidden)


def measure(
    length: int, batch: int, rounds: int = ROUNDS, names=MODELS, hidden: int = HIDDEN, seed: int = 0
) -> dict[str, list[tuple[float, float]]]:
    """(wall seconds, thread CPU seconds) of one forward + backward pass of each model,
    ``rounds`` times, interleaved, the first model rotating; after one warm-up pass each."""
    torch.manual_seed(seed)
    models = {name: build(name, hidden) for name in names}
    x = torch.randn(length, batch, hidden)

    def once(model: nn.Module) -> tuple[float, float]:
        def run() -> None:
            output, _ = model(x)
            output.sum().backward()

        return benchmark.timed(run)

    for model in models.values():  # warm-up: allocator, first-call dispatch
        once(model)
    order = list(names)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for r in range(rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            times[name].append(once(models[name]))
    return times


def time_models(
    length: int, batch: int, rounds: int = ROUNDS, names=MODELS, hidden: int = HIDDEN, seed: int = 0
) -> dict[str, list[float]]:
    """Wall seconds of one forward + backward pass of each model, ``rounds`` times,
    interleaved (:func:`measure` without the CPU times): name -> list of ``rounds`` times."""
    measured = measure(length, batch, rounds, names, hidden, seed)
    return {name: [wall for wall, _ in samples] for name, samples in measured.items()}


def sweep(lengths=LENGTHS, batches=BATCHES, batch_sweep=BATCH_SWEEP, rounds: int = ROUNDS) -> dict:
    """Every point of the table, measured under a ContentionMonitor: the results file."""
    settings = {
        "hidden": HIDDEN,
        "rounds": rounds,
        "warmup": 1,
        "lengths": list(lengths),
        "batches": list(batches),
        "batch_sweep": list(batch_sweep),
        "batch_sweep_length": BATCH_SWEEP_LENGTH,
        "clock": "wall (time.perf_counter) and thread CPU (time.thread_time) per pass",
        "pass": "forward + backward of output.sum()",
    }
    device = {"type": "cpu", "name": benchmark.cpu_name(), "threads": torch.get_num_threads()}
    results = benchmark.new_results("speed", settings, device)
    points = [(b, n) for b in batches for n in lengths]
    points += [(b, BATCH_SWEEP_LENGTH) for b in batch_sweep]
    with benchmark.ContentionMonitor() as monitor:
        for batch, length in points:
            for name, samples in measure(length, batch, rounds).items():
                walls, cpus = zip(*samples)
                row = {"model": name, "length": length, "batch": batch}
                results["rows"].append({**row, **benchmark.summarize(walls, cpus)})
            medians = {r["model"]: r["median_ms"] for r in results["rows"][-len(MODELS) :]}
            print(length, batch, medians, flush=True)
    return benchmark.finish_results(results, monitor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--tiny", action="store_true", help="two lengths, batch 1, 3 rounds")
    parser.add_argument("--note", action="append", default=[], help="a sentence for the notes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.tiny:
        results = sweep((64, 256), (1,), (), rounds=3)
    else:
        results = sweep()
    results["notes"] += args.note
    print(benchmark.conditions_report(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
