"""Precompute chapter 6's multiplication problem at T = 100: model x initialisation x seed.

The classic setting of the multiplication problem (Hochreiter & Schmidhuber, 1997, experiment 5,
in the form of `companion.data.multiplication_problem`): 3,000 sequences of 100 steps, of which
2,500 train the network, 20% of those (500) held out for validation, and the last 500 for the
test; two stacked recurrent layers and a linear head on the last hidden state; Adam on the mean
squared error, here for 15 epochs instead of 100 (see EPOCHS). The data are the same for every
run; the seed fixes the initial weights and the order of the batches. The three cells get the
hidden sizes of the adding sweep (`06_memory_sweep.HIDDEN`: the same number of parameters as an
LSTM of 30 units, to within 2%) and its "memory" initialisations (`06_memory_sweep.make_model`):
IRNN, chrono and the chrono-form update-gate bias. PyTorch's default initialisation, the other
level of that factor in the adding sweep, is left out here to halve the cost.

Scores of the last epoch: `val_mse`, `test_mse` and `test_accuracy_0.04`, the fraction of test
products (which lie in [0, 1), like H&S's targets) predicted within 0.04. The validation and
training MSE of every epoch go to a JSON file, for the loss curves of the chapter and for its live
check, which re-runs the first epochs of one run by importing `train_multiplication`.

Run from the repository root (about 5 CPU-minutes; --jobs runs in parallel):

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python book/scripts/06_multiplication_sweep.py --jobs 2
    .venv/bin/python book/scripts/06_multiplication_sweep.py --quick   # 2 epochs, writes nothing

The outputs are `book/data/06_multiplication_sweep.csv` (one row per run: cell, init, seed,
hidden, params, val_mse, test_mse, test_accuracy_0.04, epochs, cpu_seconds, the CPU time of the
run on one thread) and `book/data/06_multiplication_histories.json` ({"cell/init/seed":
{"train_loss": [...], "val_loss": [...]}}).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from companion import seed_everything
from companion.book import load_script
from companion.data import multiplication_problem
from companion.sweep import run_all, write_csv
from companion.train import evaluate, fit

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
BATCH = 100  # 20 steps of Adam per epoch, 300 in all
# The classic setting trains for 100 epochs; 15 runs of 100 epochs would take 100/15 times the
# CPU time of this sweep, so every run gets the same 15 (the loss curves show how far each run
# still moves at the end).
EPOCHS = 15
# Adam's learning rate (1e-2, memory_sweep.LR) and the clipping threshold (1.0) are those of the
# first version of the adding sweep.
TOLERANCE = 0.04  # the product lies in [0, 1), like H&S's targets: their tolerance as it is
DATA_SEED = 30_000
CELLS = tuple(memory_sweep.CELLS)
# Each cell at its best-known initialisation only: the default one is the second level of the
# factor in the adding sweep, and both levels here would double the cost.
INITS = ("memory",)
SEEDS = (0, 1, 2, 3, 4)
DATA = HERE.parent / "data"
OUT = DATA / "06_multiplication_sweep.csv"
OUT_HISTORIES = DATA / "06_multiplication_histories.json"
COLUMNS = [
    "cell",
    "init",
    "seed",
    "hidden",
    "params",
    "val_mse",
    "test_mse",
    f"test_accuracy_{TOLERANCE}",
    "epochs",
    "cpu_seconds",
]


def split_data():
    """((x, y) train, validation, test) with 2,000, 500 and 500 sequences of 100 steps."""
    x, y = multiplication_problem(N_SEQUENCES, LENGTH, seed=DATA_SEED)
    cuts = (0, N_TRAIN, N_TRAIN_ALL, N_SEQUENCES)
    return tuple((x[a:b], y[a:b]) for a, b in zip(cuts, cuts[1:]))


def within(pred, y):
    """Fraction of predictions within TOLERANCE of the target: (N, 1), (N, 1) -> scalar."""
    return memory_sweep.within(pred, y, TOLERANCE)


def train_multiplication(cell, init, seed, device=None, epochs=EPOCHS, progress=False):
    """Train ``cell`` ("RNN", "LSTM", "GRU") with ``init`` ("default", "memory") on the
    multiplication problem. Returns ``(model, history)``: the trained model and companion's
    History with train_loss and val_loss for every epoch. ``epochs`` below EPOCHS gives the
    first epochs of the same run."""
    torch.set_flush_denormal(True)  # as in the adding sweep: tiny gradients stay fast
    (x_train, y_train), val, _ = split_data()
    seed_everything(seed)
    model = memory_sweep.make_model(cell, init, t_max=LENGTH).to(device)
    loader = DataLoader(
        TensorDataset(x_train, y_train),
        batch_size=BATCH,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    history = fit(
        model,
        loader,
        loss_fn=nn.MSELoss(),
        optimizer=torch.optim.Adam(model.parameters(), lr=memory_sweep.LR),
        epochs=epochs,
        val_data=[val],
        clip_grad_norm=memory_sweep.CLIP,
        device=device,
        progress=progress,
    )
    return model, history


def run_one(cell, init, seed, epochs=EPOCHS):
    """One row of the table and its per-epoch losses, trained on the CPU with one thread."""
    torch.set_num_threads(1)
    start = time.process_time()
    try:
        model, history = train_multiplication(
            cell, init, seed, device=torch.device("cpu"), epochs=epochs
        )
    except FloatingPointError as err:  # a diverged run is a result too: it learned nothing
        print(f"{cell} {init} seed {seed} diverged: {err}", flush=True)
        done = [r for r in getattr(err, "history", []) if "val_loss" in r]  # finished epochs
        curves = {k: [round(r[k], 7) for r in done] for k in ("train_loss", "val_loss")}
        row = {"cell": cell, "init": init, "seed": seed, "hidden": memory_sweep.HIDDEN[cell]}
        row.update(params="", val_mse="nan", test_mse="nan", epochs=len(done))
        row[f"test_accuracy_{TOLERANCE}"] = "0.0000"
        row["cpu_seconds"] = f"{time.process_time() - start:.1f}"
        return row, curves
    _, _, test = split_data()
    scores = evaluate(model, [test], loss_fn=nn.MSELoss(), metrics={"accuracy": within})
    row = {
        "cell": cell,
        "init": init,
        "seed": seed,
        "hidden": model.rnn.hidden_size,
        "params": sum(p.numel() for p in model.parameters()),
        "val_mse": f"{history[-1]['val_loss']:.6g}",
        "test_mse": f"{scores['loss']:.6g}",
        f"test_accuracy_{TOLERANCE}": f"{scores['accuracy']:.4f}",
        "epochs": len(history),
        "cpu_seconds": f"{time.process_time() - start:.1f}",
    }
    curves = {
        "train_loss": [round(v, 7) for v in history["train_loss"]],
        "val_loss": [round(v, 7) for v in history["val_loss"]],
    }
    return row, curves


def describe(run, result):
    """One line per finished run (`companion.sweep.run_all` adds the wall time so far)."""
    row = result[0]
    return (
        f"{row['cell']:4s} {row['init']:7s} seed {row['seed']}: test MSE "
        f"{float(row['test_mse']):.2e}, within {TOLERANCE}: "
        f"{row[f'test_accuracy_{TOLERANCE}']} ({row['cpu_seconds']} s CPU)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs of seed 0, writes nothing")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one thread each")
    args = parser.parse_args()
    seeds, epochs = ((0,), 2) if args.quick else (SEEDS, EPOCHS)
    runs = [(c, i, s, epochs) for s in seeds for c in CELLS for i in INITS]
    results = run_all(run_one, runs, jobs=args.jobs, describe=describe)
    rows = [results[run][0] for run in runs]
    print(f"{len(rows)} runs, {sum(float(r['cpu_seconds']) for r in rows):.0f} s of CPU time")
    if not args.quick:
        write_csv(rows, OUT, COLUMNS)
        histories = {"/".join(map(str, run[:3])): results[run][1] for run in runs}
        OUT_HISTORIES.write_text(json.dumps(histories, indent=0) + "\n")
        print(f"wrote {len(histories)} histories to {OUT_HISTORIES}")


if __name__ == "__main__":
    main()
