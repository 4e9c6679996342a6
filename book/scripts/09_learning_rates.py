"""Chapter 9's comparison with a learning rate chosen for each cell on validation.

The stored comparison (`09_char_models.py`) trains RNN, LSTM and GRU at one Adam rate, 1e-2. A
rate that suits one cell may be too high or too low for another, so here every cell gets the
rate of GRID with the lowest validation loss at the end of one pass, on TUNING_SEED (a seed of
its own, not one of the five compared), and then the five seeds of SEEDS train at that rate.
Everything else (model sizes, the default initialisation, one pass of 980 steps, clipping at
1.0) is that of `09_char_models.py`, whose `train_char_lm` does the training.

Run from the repository root (about 7 CPU-minutes on one thread; it writes the file after
every run, and a stopped sweep resumes where it stopped):

    OMP_NUM_THREADS=1 .venv/bin/python book/scripts/09_learning_rates.py

The file is `book/data/09_learning_rates.json`, a dict with the keys grid, tuning_seed, seeds,
chosen ({cell: lr}), tuning (the tuning runs) and runs (the compared runs); every run is a
record of `train_char_lm` and holds cell, init, seed, lr, steps, epochs and stop_reason.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import torch

from companion.selection import choose_learning_rate

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("char_models", HERE / "09_char_models.py")
char_models = importlib.util.module_from_spec(spec)
sys.dont_write_bytecode = True  # leave no __pycache__ behind
spec.loader.exec_module(char_models)

GRID = (1e-3, 3e-3, 1e-2, 3e-2)
TUNING_SEED = 10  # disjoint from the compared seeds 0-4
SEEDS = char_models.SEEDS
INIT = "default"  # chapter 9's two-seed test found no gain from the "memory" initialisation
OUT = HERE.parent / "data" / "09_learning_rates.json"


def run(result: dict, key: str, cell: str, seed: int, lr: float, data) -> dict:
    """The record of (cell, seed, lr) in result[key], trained now if it is not there yet."""
    for r in result[key]:
        if (r["cell"], r["seed"], r["lr"]) == (cell, seed, lr):
            return r
    _, record = char_models.train_char_lm(cell, seed, INIT, data, lr=lr)
    result[key].append(record)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    final = record["val_loss"][-1]
    print(
        f"{key:6s} {cell:4s} seed {seed:2d} lr {lr:g}: val {final:.4f} nats "
        f"({final / math.log(2):.3f} bpc), {record['stop_reason']}, "
        f"{record['cpu_seconds']} CPU s",
        flush=True,
    )
    return record


def main() -> None:
    torch.set_num_threads(1)
    data = char_models.corpus()
    fresh = dict(tuning_seed=TUNING_SEED, seeds=list(SEEDS), init=INIT)
    result = json.loads(OUT.read_text()) if OUT.exists() else {}
    if {k: result.get(k) for k in fresh} != fresh:  # other settings: start again
        result = dict(fresh, chosen={}, tuning=[], runs=[])
    result["grid"] = list(GRID)  # a wider grid keeps the runs it already has
    for cell in char_models.CELLS:
        lr, _ = choose_learning_rate(
            GRID,
            lambda lr, cell=cell: run(result, "tuning", cell, TUNING_SEED, lr, data)["val_loss"][
                -1
            ],
        )
        result["chosen"][cell] = lr
        OUT.write_text(json.dumps(result, indent=1) + "\n")
        print(f"{cell}: chosen lr {lr:g}", flush=True)
    for seed in SEEDS:
        for cell in char_models.CELLS:
            run(result, "runs", cell, seed, result["chosen"][cell], data)


if __name__ == "__main__":
    main()
