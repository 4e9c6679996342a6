"""Precompute chapter 12's speed table: minGRU (scan and loop) against two GRUs, by length.

For every sequence length in LENGTHS and batch size in BATCHES (and at length 1024 for the
batch sizes in BATCH_SWEEP), time one forward and backward
pass (the loss is the sum of the outputs) of four one-layer models with H_in = H = 64:

- ``minGRU scan``: ``companion.models.MinGRU(mode="parallel")``, the chunked scan;
- ``minGRU loop``: the same layer with ``mode="sequential"``, a Python loop over time;
- ``nn.GRU``: PyTorch's fused GRU;
- ``GRU (companion)``: the GRU written from its equations, a Python loop over time.

The four are timed in turn within each round (interleaved), so that a change in the machine's
load hits all of them alike; the table keeps the median of ROUNDS rounds after one warm-up call.
The machine this ran on was shared, so absolute times are inflated by an unknown factor; the
ratios between models measured in the same round, and the length at which one model overtakes
another, are what the chapter relies on. The load average before and after is stored.

The notebook ``book/12_gated_recurrences_today.ipynb`` imports ``time_models`` from this file to
re-time one point live.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python book/scripts/12_speed_sweep.py

Output: ``book/data/12_speed_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from companion import models as cm

HIDDEN = 64
LENGTHS = (64, 256, 1024, 4096)
BATCHES = (1, 32)
BATCH_SWEEP, BATCH_SWEEP_LENGTH = (2, 4, 8, 16), 1024  # where, between 1 and 32, is the switch?
ROUNDS = 5
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


def time_models(
    length: int, batch: int, rounds: int = ROUNDS, names=MODELS, hidden: int = HIDDEN, seed: int = 0
) -> dict[str, list[float]]:
    """Seconds of one forward + backward pass of each model, ``rounds`` times, interleaved.

    Returns name -> list of ``rounds`` times (process CPU seconds, one thread).
    """
    torch.manual_seed(seed)
    models = {name: build(name, hidden) for name in names}
    x = torch.randn(length, batch, hidden)

    def once(model: nn.Module) -> float:
        start = time.process_time()
        output, _ = model(x)
        output.sum().backward()
        return time.process_time() - start

    for model in models.values():  # warm-up: allocator, first-call dispatch
        once(model)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name, model in models.items():
            times[name].append(once(model))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    rows = []
    points = [(b, n) for b in BATCHES for n in LENGTHS]
    points += [(b, BATCH_SWEEP_LENGTH) for b in BATCH_SWEEP]
    for batch, length in points:
        times = time_models(length, batch)
        row = {
            "length": length,
            "batch": batch,
            "median_s": {k: statistics.median(v) for k, v in times.items()},
            "times_s": times,
        }
        rows.append(row)
        print(length, batch, {k: round(v, 4) for k, v in row["median_s"].items()}, flush=True)
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": "cpu",
        "threads": 1,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "hidden": HIDDEN,
        "rounds": ROUNDS,
        "clock": "time.process_time",
        "pass": "forward + backward of output.sum()",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
