"""Precompute chapter 6's adding-problem sweep: each cell and initialisation at its best, 5 seeds.

For every cell (RNN, LSTM, GRU), both initialisations in INITS ("default": PyTorch's; "memory":
the best-known one for that cell, see `make_model`) and every length in LENGTHS, choose Adam's
learning rate from LR_GRID by the validation MSE of a run on TUNE_SEED, then train the chapter's
network (two stacked recurrent layers and a linear head on the last hidden state) with that rate
on every seed in SEEDS, until its validation MSE has not improved for PATIENCE epochs or for
MAX_EPOCHS, keeping its best epoch, and score it on 1,000 test sequences drawn with a seed of
their own. The hidden sizes (HIDDEN) give the three networks the same number of parameters to
within 2%, that of the LSTM with 30 units.

Scores: `val_mse` (the best epoch's), `test_mse`, `accuracy_0.04` (the fraction of test
predictions within 0.04 of the sum, which lies in [0, 2)) and `accuracy_hs` (within 0.08 of the
sum, that is within 0.04 of the sum rescaled to [0, 1], the tolerance of Hochreiter &
Schmidhuber (1997) relative to the target's range).

The notebook `book/06_long_range_memory.ipynb` imports `train_adding` (and the models and
initialisations) from this file, so that the chapter and the sweep cannot drift apart; it
re-runs points of the table live. The multiplication sweep `06_multiplication_sweep.py` imports
the models and `at_best` from here as well.

Run from the repository root (about 15 CPU-minutes; --jobs runs in parallel):

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python book/scripts/06_memory_sweep.py --jobs 2
    .venv/bin/python book/scripts/06_memory_sweep.py --quick    # length 10, seed 0, writes nothing

The outputs are `book/data/06_memory_sweep.csv` (one row per run: cell, init, length, seed, lr,
hidden, params, val_mse, test_mse, accuracy_0.04, accuracy_hs, epochs, best_epoch, stop and
cpu_seconds, the CPU time of that run, one thread), `book/data/06_memory_lr_grid.csv` (the
tuning runs, the same columns) and `book/data/06_memory_histories.json` with the training loss,
validation loss and validation accuracy_hs of every epoch ({"cell/init/length/seed": {...}} and
"cell/init/length/seed/lr" for the tuning runs).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from companion import seed_everything, selection
from companion.data import adding_problem
from companion.init import chrono_init, identity_init
from companion.selection import fit_until_plateau, save_at_best
from companion.train import evaluate

# The settings of the chapter (the notebook imports them from here).
# Hidden sizes with the same parameter count (about 11.6k) for the three cells: 2 layers of H
# units take 3H^2 + 6H (RNN), 9H^2 + 18H (GRU) or 12H^2 + 24H (LSTM) weights and biases.
HIDDEN = {"RNN": 61, "LSTM": 30, "GRU": 35}
LAYERS = 2
N_TRAIN, N_VAL, BATCH = 1600, 1000, 32  # 50 steps of Adam per epoch
CLIP = 1.0
# Each cell at its best (the same way for all): Adam's learning rate chosen from LR_GRID by the
# best validation MSE of a run on TUNE_SEED, a seed whose scores the chapter never compares; then
# every run trains until its validation MSE has not improved for PATIENCE epochs, or MAX_EPOCHS.
LR_GRID = (1e-3, 3e-3, 1e-2)
TUNE_SEED = 100
MAX_EPOCHS, PATIENCE = 30, 5
LR = 1e-2  # the rate every cell had before the grid: the IRNN explodes at it (chapter 6)
N_TEST, TEST_SEED = 1000, 20_000  # the test sequences: scored once, after training
TOLERANCE = 0.04  # a prediction within 0.04 of the target counts as correct (H&S 1997)
HS_TOLERANCE = 0.08  # 0.04 of the sum rescaled from [0, 2) to [0, 1): H&S's tolerance
VAL_SEED = 10_000  # the held-out sequences are the same for every cell and seed
CELLS = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
INITS = ("default", "memory")
LENGTHS = (50,)  # one length, to fit the budget; chapter 8 sweeps the distance
SEEDS = (0, 1, 2, 3, 4)
DATA = Path(__file__).resolve().parents[1] / "data"
OUT = DATA / "06_memory_sweep.csv"
OUT_HISTORIES = DATA / "06_memory_histories.json"
OUT_GRID = DATA / "06_memory_lr_grid.csv"
COLUMNS = [
    "cell",
    "init",
    "length",
    "seed",
    "lr",
    "hidden",
    "params",
    "val_mse",
    "test_mse",
    f"accuracy_{TOLERANCE}",
    "accuracy_hs",
    "epochs",
    "best_epoch",
    "stop",
    "cpu_seconds",
]


class LastStepRegressor(nn.Module):
    """Stacked recurrent layers and a linear head on the last hidden state: (N, L, 2) -> (N, 1).

    ``layer`` is a class with torch.nn.RNN's constructor (``nn.LSTM``, or its twin
    ``companion.models.LSTM``); the parameter names are the same for both, so a state dict
    trained with one loads into the other. ``nonlinearity`` is passed on for the RNN only.
    """

    def __init__(self, layer, input_size=2, hidden_size=30, num_layers=LAYERS, **kwargs):
        super().__init__()
        self.rnn = layer(input_size, hidden_size, num_layers=num_layers, batch_first=True, **kwargs)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x):
        out, _ = self.rnn(x)  # (N, L, H): the last layer's h_t at every step
        return self.head(out[:, -1])  # (N, 1) from h_L


def make_model(cell, init, t_max, layer=None, hidden=None):
    """The chapter's network for ``cell`` ("RNN", "LSTM" or "GRU") and ``init``.

    ``init="default"`` keeps PyTorch's initialisation (a tanh RNN); ``"memory"`` gives each cell
    its best-known start for long memories: the IRNN for the RNN, chrono for the LSTM and the
    update-gate bias for the GRU, both with ``t_max`` (the length of the sequences). ``layer``
    overrides the torch.nn class (e.g. with a companion twin), ``hidden`` the hidden size.
    """
    if init not in INITS:
        raise ValueError(f"expected init in {INITS}, got {init!r}")
    kwargs = {"nonlinearity": "relu"} if cell == "RNN" and init == "memory" else {}
    model = LastStepRegressor(layer or CELLS[cell], hidden_size=hidden or HIDDEN[cell], **kwargs)
    if init == "memory" and cell == "RNN":
        identity_init(model.rnn)
    elif init == "memory":  # the LSTM's chrono form, or the GRU's update gate in the same form
        chrono_init(model.rnn, t_max)
    return model


def within(pred, y, tolerance=TOLERANCE):
    """Fraction of predictions within ``tolerance`` of the target: (N, 1), (N, 1) -> scalar."""
    return ((pred - y).abs() < tolerance).float().mean()


def within_hs(pred, y):
    """Fraction within H&S's tolerance, 0.04 of the target's range: 0.08 of the sum."""
    return within(pred, y, HS_TOLERANCE)


SCORES = {"accuracy": within, "hs": within_hs}


def train_adding(
    cell, init, length, seed, lr=LR, device=None, progress=False, max_epochs=MAX_EPOCHS
):
    """Train the chapter's network for ``cell`` and ``init`` on the adding problem of ``length``.

    ``seed`` fixes the initial weights, the training sequences and their shuffling; the
    validation sequences depend on the length only. Adam at ``lr`` trains until the validation
    MSE has not improved for PATIENCE epochs, or for ``max_epochs``; the model keeps the weights
    of its best validation epoch. Returns ``(model, stopped)``: the model and a
    `companion.selection.Stopped` (history with train_loss, val_loss, val_accuracy and val_hs
    for every epoch, the best epoch, the stop reason). Sets ``torch.set_flush_denormal(True)``.
    """
    # Gradients that vanish over 100 steps become subnormal floats, which the CPU handles up to
    # a hundred times slower; flushing them to zero changes no result we store but the time.
    torch.set_flush_denormal(True)
    x_train, y_train = adding_problem(N_TRAIN, length, seed=seed)
    x_val, y_val = adding_problem(N_VAL, length, seed=VAL_SEED)
    seed_everything(seed)
    model = make_model(cell, init, t_max=length).to(device)
    metrics = {"accuracy": within, "hs": within_hs}
    stopped = fit_regressor(
        model, (x_train, y_train), (x_val, y_val), seed, lr, max_epochs, device, progress, metrics
    )
    return model, stopped


def fit_regressor(
    model,
    train,
    val,
    seed,
    lr,
    max_epochs,
    device=None,
    progress=False,
    metrics=None,
    batch=BATCH,
    patience=PATIENCE,
):
    """The training every last-step regressor of chapters 6 and 12 shares: Adam at ``lr``, MSE,
    clipping at CLIP, batches of ``batch`` shuffled by ``seed``, until the validation loss has not
    improved for ``patience`` epochs or for ``max_epochs``.

    ``train`` and ``val`` are ``(x, y)`` pairs; returns a `companion.selection.Stopped`."""
    loader = DataLoader(
        TensorDataset(*train),
        batch_size=batch,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    return fit_until_plateau(
        model,
        loader,
        val_data=[val],
        max_epochs=max_epochs,
        patience=patience,
        loss_fn=nn.MSELoss(),
        optimizer=torch.optim.Adam(model.parameters(), lr=lr),
        clip_grad_norm=CLIP,
        metrics=metrics,
        device=device,
        progress=progress,
    )


def test_set(length):
    """The 1,000 test sequences of ``length``: drawn with their own seed, scored once."""
    return adding_problem(N_TEST, length, seed=TEST_SEED)


def run_one(cell, init, length, seed, lr):
    """(losses of every epoch, one row of the table), trained on the CPU with one thread."""
    torch.set_num_threads(1)  # tiny matrices: more threads only add waiting on a busy CPU
    start = time.process_time()
    model, stopped = train_adding(cell, init, length, seed, lr, device=torch.device("cpu"))
    h = stopped.history
    curves = {
        k: [round(r[k], 7) for r in h if k in r] for k in ("train_loss", "val_loss", "val_hs")
    }
    scores = evaluate(model, [test_set(length)], loss_fn=nn.MSELoss(), metrics=SCORES)
    return curves, {
        "cell": cell,
        "init": init,
        "length": length,
        "seed": seed,
        "lr": lr,
        "hidden": model.rnn.hidden_size,
        "params": sum(p.numel() for p in model.parameters()),
        "val_mse": f"{stopped.best_val_loss:.6g}",
        "test_mse": f"{scores['loss']:.6g}",
        f"accuracy_{TOLERANCE}": f"{scores['accuracy']:.4f}",
        "accuracy_hs": f"{scores['hs']:.4f}",
        "epochs": stopped.epochs,
        "best_epoch": stopped.best_epoch,
        "stop": stopped.reason,
        "cpu_seconds": f"{time.process_time() - start:.1f}",
    }


def at_best(arms, run, jobs, describe, seeds=SEEDS):
    """`companion.selection.at_best` with this chapter's grid, tuning seed and seeds."""
    return selection.at_best(
        arms, run, grid=LR_GRID, tune_seed=TUNE_SEED, seeds=seeds, jobs=jobs, describe=describe
    )


def describe(row):
    """One line per finished run (`companion.sweep.run_all` adds the wall time so far)."""
    return (
        f"{row['cell']:4s} {row['init']:7s} T {row['length']:3d} seed {row['seed']:3d} "
        f"lr {row['lr']:g}: val MSE {float(row['val_mse']):.2e}, test within 0.08 "
        f"{row['accuracy_hs']}, {row['epochs']} epochs ({row['stop']}; {row['cpu_seconds']} s CPU)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="length 10, seed 0; writes nothing")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one thread each")
    args = parser.parse_args()
    if args.quick:
        print(describe(run_one("LSTM", "memory", 10, 0, LR)[1]))
        return
    arms = [(c, i, n) for n in LENGTHS for c in CELLS for i in INITS]
    grid, chosen, results = at_best(arms, run_one, args.jobs, describe)
    rows = save_at_best(
        grid,
        results,
        order=lambda k: (k[0][2], list(CELLS).index(k[0][0]), k[0][1], k[1]),
        columns=COLUMNS,
        out=OUT,
        out_grid=OUT_GRID,
        out_histories=OUT_HISTORIES,
        tune_seed=TUNE_SEED,
    )
    cpu = sum(float(r["cpu_seconds"]) for r in rows + [v[1] for v in grid.values()])
    print(f"{len(rows)} runs and {len(grid)} tuning runs, {cpu:.0f} s of CPU time")
    print(f"wrote {len(rows) + len(grid)} histories to {OUT_HISTORIES}")


if __name__ == "__main__":
    main()
