"""Precompute chapter 6's multiplication problem at T = 100: each cell at its best, 5 seeds.

The classic setting of the multiplication problem (Hochreiter & Schmidhuber, 1997, experiment 5,
in the form of `companion.data.multiplication_problem`): 3,000 sequences of 100 steps, of which
2,500 train the network, 20% of those (500) held out for validation, and the last 500 for the
test; two stacked recurrent layers and a linear head on the last hidden state; Adam on the mean
squared error for up to the classic 100 epochs (2,000 steps at batch 100), stopped when the
validation MSE has not improved for PATIENCE epochs; every run keeps its best validation epoch.
The data are the same for every run; the seed fixes the initial weights and the order of the
batches. The arms (ARMS) get the hidden sizes of the adding sweep (`06_memory_sweep.HIDDEN`: the
same number of parameters as an LSTM of 30 units, to within 2%): the plain tanh RNN, the IRNN,
the LSTM with chrono and the GRU with the chrono-form update-gate bias. Each arm's learning rate
is chosen from the adding sweep's grid by the validation MSE of a run on its tuning seed.

Scores: `val_mse` (the best epoch's), `test_mse` and `test_accuracy_0.04`, the fraction of test
products (which lie in [0, 1), like H&S's targets) predicted within 0.04. The training and
validation MSE of every epoch go to a JSON file, for the loss curves of the chapter.

Run from the repository root (about 45 CPU-minutes; --jobs runs in parallel):

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python book/scripts/06_multiplication_sweep.py --jobs 2
    .venv/bin/python book/scripts/06_multiplication_sweep.py --quick   # 2 epochs, writes nothing

The outputs are `book/data/06_multiplication_sweep.csv` (one row per run: cell, init, seed, lr,
hidden, params, val_mse, test_mse, test_accuracy_0.04, epochs, best_epoch, stop and
cpu_seconds, the CPU time of the run on one thread), `book/data/06_multiplication_lr_grid.csv`
(the tuning runs, the same columns) and `book/data/06_multiplication_histories.json`
({"cell/init/seed": {"train_loss": [...], "val_loss": [...]}}, and "cell/init/seed/lr" for the
tuning runs).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

from companion import seed_everything
from companion.book import load_script
from companion.data import multiplication_problem
from companion.selection import save_at_best
from companion.train import evaluate

HERE = Path(__file__).resolve().parent


# The adding sweep's module (its file name starts with a digit, so no plain import): the notebook
# loads it first, and a script run on its own loads it here.
memory_sweep = sys.modules.get("memory_sweep") or load_script(
    "memory_sweep", "scripts/06_memory_sweep.py", HERE.parent
)

LENGTH = 100
N_SEQUENCES, N_TRAIN_ALL, VAL_FRACTION = 3000, 2500, 0.2
N_VAL = int(N_TRAIN_ALL * VAL_FRACTION)  # 500
N_TRAIN = N_TRAIN_ALL - N_VAL  # 2000
BATCH = 100  # 20 steps of Adam per epoch
# The classic budget: up to 100 epochs (2,000 steps of Adam), stopped earlier when the validation
# MSE has not improved for PATIENCE epochs. The learning rate comes from the adding sweep's grid
# (memory_sweep.LR_GRID), chosen on validation per arm with its tuning seed; the clipping
# threshold is the adding sweep's.
EPOCHS, PATIENCE = 100, 20
TOLERANCE = 0.04  # the product lies in [0, 1), like H&S's targets: their tolerance as it is
DATA_SEED = 30_000
CELLS = tuple(memory_sweep.CELLS)
# Each gated cell at its best-known initialisation (the default one is the second level of the
# factor in the adding sweep); the RNN both as the IRNN and as the plain tanh RNN of the classic
# "simple RNN against LSTM" comparison.
ARMS = [("RNN", "default"), ("RNN", "memory"), ("LSTM", "memory"), ("GRU", "memory")]
SEEDS = (0, 1, 2, 3, 4)
DATA = HERE.parent / "data"
OUT = DATA / "06_multiplication_sweep.csv"
OUT_HISTORIES = DATA / "06_multiplication_histories.json"
OUT_GRID = DATA / "06_multiplication_lr_grid.csv"
COLUMNS = [
    "cell",
    "init",
    "seed",
    "lr",
    "hidden",
    "params",
    "val_mse",
    "test_mse",
    f"test_accuracy_{TOLERANCE}",
    "epochs",
    "best_epoch",
    "stop",
    "cpu_seconds",
]


def split_data():
    """((x, y) train, validation, test) with 2,000, 500 and 500 sequences of 100 steps."""
    x, y = multiplication_problem(N_SEQUENCES, LENGTH, seed=DATA_SEED)
    cuts = (0, N_TRAIN, N_TRAIN_ALL, N_SEQUENCES)
    return tuple((x[a:b], y[a:b]) for a, b in zip(cuts, cuts[1:]))


def within(pred, y):
    """Fraction of predictions within TOLERANCE of the target: (N, 1), (N, 1) -> scalar."""
    return ((pred - y).abs() < TOLERANCE).float().mean()


def train_multiplication(cell, init, seed, lr=memory_sweep.LR, device=None, max_epochs=EPOCHS):
    """Train ``cell`` ("RNN", "LSTM", "GRU") with ``init`` ("default", "memory") on the
    multiplication problem with Adam at ``lr``, until the validation MSE has not improved for
    PATIENCE epochs or for ``max_epochs``; the model keeps its best validation epoch. Returns
    ``(model, stopped)``: the model and a `companion.selection.Stopped` (history with
    train_loss and val_loss for every epoch, best epoch, stop reason)."""
    torch.set_flush_denormal(True)  # as in the adding sweep: tiny gradients stay fast
    (x_train, y_train), val, _ = split_data()
    seed_everything(seed)
    model = memory_sweep.make_model(cell, init, t_max=LENGTH).to(device)
    stopped = memory_sweep.fit_regressor(
        model, (x_train, y_train), val, seed, lr, max_epochs, device, batch=BATCH, patience=PATIENCE
    )
    return model, stopped


def run_one(cell, init, seed, lr):
    """(per-epoch losses, one row of the table), trained on the CPU with one thread."""
    torch.set_num_threads(1)
    start = time.process_time()
    model, stopped = train_multiplication(cell, init, seed, lr, device=torch.device("cpu"))
    _, _, test = split_data()
    scores = evaluate(model, [test], loss_fn=nn.MSELoss(), metrics={"accuracy": within})
    curves = {k: [round(r[k], 7) for r in stopped.history] for k in ("train_loss", "val_loss")}
    return curves, {
        "cell": cell,
        "init": init,
        "seed": seed,
        "lr": lr,
        "hidden": model.rnn.hidden_size,
        "params": sum(p.numel() for p in model.parameters()),
        "val_mse": f"{stopped.best_val_loss:.6g}",
        "test_mse": f"{scores['loss']:.6g}",
        f"test_accuracy_{TOLERANCE}": f"{scores['accuracy']:.4f}",
        "epochs": stopped.epochs,
        "best_epoch": stopped.best_epoch,
        "stop": stopped.reason,
        "cpu_seconds": f"{time.process_time() - start:.1f}",
    }


def describe(row):
    """One line per finished run."""
    return (
        f"{row['cell']:4s} {row['init']:7s} seed {row['seed']:3d} lr {row['lr']:g}: "
        f"val MSE {float(row['val_mse']):.2e}, test within {TOLERANCE} "
        f"{row[f'test_accuracy_{TOLERANCE}']}, {row['epochs']} epochs ({row['stop']}; "
        f"{row['cpu_seconds']} s CPU)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs of seed 0, writes nothing")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one thread each")
    args = parser.parse_args()
    if args.quick:
        model, stopped = train_multiplication("GRU", "memory", 0, max_epochs=2)
        print(f"GRU memory seed 0, 2 epochs: val MSE {stopped.best_val_loss:.4g}")
        return
    grid, chosen, results = memory_sweep.at_best(ARMS, run_one, args.jobs, describe)
    rows = save_at_best(
        grid,
        results,
        order=lambda k: (ARMS.index(k[0]), k[1]),
        columns=COLUMNS,
        out=OUT,
        out_grid=OUT_GRID,
        out_histories=OUT_HISTORIES,
        tune_seed=memory_sweep.TUNE_SEED,
    )
    cpu = sum(float(r["cpu_seconds"]) for r in rows + [v[1] for v in grid.values()])
    print(f"{len(rows)} runs and {len(grid)} tuning runs, {cpu:.0f} s of CPU time")
    print(f"wrote {len(rows) + len(grid)} histories to {OUT_HISTORIES}")


if __name__ == "__main__":
    main()
