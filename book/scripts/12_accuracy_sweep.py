"""Precompute chapter 12's accuracy table: minGRU and minLSTM against the GRU and the LSTM on the
adding and multiplication problems at T = 100, at matched parameter counts, each at its best.

The set-up is chapter 6's: 3,000 sequences of one fixed draw, the last 500 held out for the test;
of the first 2,500, 20% (500) validate and 2,000 train. Two stacked layers and a linear head on
the last hidden state, Adam, the mean squared error, the gradient norm clipped at 1, batches of 32
(63 steps of Adam an epoch). The seed sets the initial weights and the order of the batches; the
data are the same for every run.

The four layers get about 8,700 parameters each (HIDDEN): the GRU 30 units, the LSTM 26, the
minGRU 64, the minLSTM 52. Each is at its best, the same way for all (chapter 6's rule):

- the chrono initialisation in each layer's form (`companion.init.chrono_init`, T_max = T): the
  one chapter 6 found best for the LSTM and the GRU, and its direct translation for the minimal
  layers, whose memory gates have the same job;
- Adam's learning rate chosen from chapter 6's grid (LR_GRID) by the best validation MSE of a run
  on the tuning seed TUNE_SEED, which no compared score uses;
- up to MAX_EPOCHS epochs, stopped when the validation MSE has not improved for PATIENCE epochs;
  every run keeps its best validation epoch.

Hochreiter and Schmidhuber stopped training once the last 2,000 sequences were all "processed
correctly" (within 0.04 of a target of range 1; 0.08 of our sum, 0.04 of our product,
HS_TOLERANCE). Our version of their criterion: every one of the 500 validation sequences within
that tolerance. ``steps_to_criterion`` is the first epoch's end (in steps of Adam) at which a run
met it, empty if it never did; ``test_accuracy_hs`` the share of test sequences within the
tolerance at the best epoch.

minGRU and minLSTM are trained in their sequential mode, which computes the same function as the
scan (tests/test_minrnn.py checks it to 1e-12 in float64) and is faster on one CPU thread at this
length (see 12_speed_sweep.py).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python book/scripts/12_accuracy_sweep.py --jobs 2
    .venv/bin/python book/scripts/12_accuracy_sweep.py --quick   # 2 epochs, writes nothing

Outputs: ``book/data/12_accuracy_sweep.csv`` (one row per compared run, COLUMNS),
``book/data/12_accuracy_lr_grid.csv`` (the tuning runs, the same columns) and
``book/data/12_accuracy_histories.json`` ({"task/model/seed": {"train_loss", "val_loss",
"val_hs"}: one value per epoch}, and "task/model/seed/lr" for the tuning runs).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

from companion import models as cm
from companion import seed_everything
from companion.book import load_script
from companion.data import adding_problem, multiplication_problem
from companion.init import chrono_init, set_gate_bias
from companion.selection import at_best, save_at_best

# Chapter 6's network and tolerance score (its file name starts with a digit, so no plain import;
# the chapter loads that script first, and a script run on its own loads it here).
memory_sweep = sys.modules.get("memory_sweep") or load_script(
    "memory_sweep", "scripts/06_memory_sweep.py", Path(__file__).resolve().parents[1]
)

LENGTH, N_ALL, N_TEST, VAL_FRACTION = 100, 3000, 500, 0.2
LAYERS, BATCH, CLIP = 2, 32, 1.0
LR = 1e-2  # the rate of fit_mse, which chapter 12's sLSTM sweep shares
DATA_SEED, TOLERANCE = 0, 0.04
TASKS = {"adding": adding_problem, "multiplication": multiplication_problem}
# H&S's tolerance, 0.04 of a target of range 1: our sum spans [0, 2), our product [0, 1)
HS_TOLERANCE = {"adding": 0.08, "multiplication": 0.04}
HIDDEN = {"GRU": 30, "LSTM": 26, "minGRU": 64, "minLSTM": 52}
ARMS = [(task, model) for task in TASKS for model in HIDDEN]
LR_GRID, TUNE_SEED = memory_sweep.LR_GRID, memory_sweep.TUNE_SEED
MAX_EPOCHS, PATIENCE = 40, 8  # up to 2,520 steps of Adam
SEEDS = (0, 1, 2, 3, 4)
DATA = Path(__file__).resolve().parents[1] / "data"
OUT = DATA / "12_accuracy_sweep.csv"
OUT_GRID = DATA / "12_accuracy_lr_grid.csv"
OUT_HISTORIES = DATA / "12_accuracy_histories.json"
COLUMNS = [
    "task",
    "model",
    "init",
    "seed",
    "lr",
    "params",
    "val_mse",
    "test_mse",
    "test_accuracy",
    "test_accuracy_hs",
    "steps_to_criterion",
    "epochs",
    "best_epoch",
    "stop",
    "cpu_seconds",
]


def split(task: str):
    """The chapter's fixed data: ((x, y) train, (x, y) validation, (x, y) test)."""
    x, y = TASKS[task](N_ALL, LENGTH, seed=DATA_SEED)
    n_fit = N_ALL - N_TEST
    n_val = int(VAL_FRACTION * n_fit)
    n_train = n_fit - n_val
    return (
        (x[:n_train], y[:n_train]),
        (x[n_train:n_fit], y[n_train:n_fit]),
        (x[n_fit:], y[n_fit:]),
    )


# The "remember" bias of each layer: (gate, value), set with companion.init.set_gate_bias. The
# first version of this table started every model so; chapter 12's sLSTM sweep still does.
REMEMBER = {
    "GRU": ("z", 1.0),  # rows r, z, n: b_z = +1 keeps the state
    "LSTM": ("f", 1.0),  # rows i, f, g, o: b_f = +1
    "minGRU": ("z", -1.0),  # rows z, h: b_z = -1 writes little
    "minLSTM": ("f", 1.0),  # rows f, i, h: b_f = +1
}
INITS = ("chrono", "remember")


def make_net(model: str, init: str = "remember") -> nn.Module:
    """Chapter 6's network for ``model``: two recurrent layers, batch first, and a linear head on
    the last step: (N, T, 2) -> (N, 1). ``init`` is "chrono" (`companion.init.chrono_init` with
    T_max = LENGTH, in each layer's form) or "remember" (the constant bias of REMEMBER)."""
    if init not in INITS:
        raise ValueError(f"make_net: expected init in {INITS}, got {init!r}")
    if model in ("GRU", "LSTM"):
        layer, kwargs = getattr(nn, model), {}
    else:  # chapter 12's layers, in their sequential mode (see the module's docstring)
        layer, kwargs = (cm.MinGRU if model == "minGRU" else cm.MinLSTM), {"mode": "sequential"}
    net = memory_sweep.LastStepRegressor(
        layer, hidden_size=HIDDEN[model], num_layers=LAYERS, **kwargs
    )
    if init == "chrono":
        chrono_init(net.rnn, LENGTH)
    else:
        set_gate_bias(net.rnn, *REMEMBER[model])
    return net


def scores(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, tolerance: float = TOLERANCE
) -> tuple[float, float]:
    """(MSE, fraction within ``tolerance``) of ``net`` on (x, y)."""
    net.eval()
    with torch.no_grad():
        pred = net(x)
    net.train()
    return ((pred - y) ** 2).mean().item(), memory_sweep.within(pred, y, tolerance).item()


def fit_mse(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    seed: int,
    epochs: int,
    batch: int = BATCH,
    lr: float = LR,
    clip: float = CLIP,
) -> float:
    """Train ``net`` on (x, y) with Adam and the mean squared error, the gradient norm clipped,
    the batches shuffled by ``seed``; return the CPU seconds it took. Chapter 12's sweeps share
    it, so every model there is trained the same way."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    start = time.process_time()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=order)
        for k in range(0, len(x), batch):
            idx = perm[k : k + batch]
            loss = ((net(x[idx]) - y[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()
    return time.process_time() - start


def train_one(task: str, model: str, seed: int, lr: float, max_epochs: int = MAX_EPOCHS):
    """Train ``model`` (chrono start) on ``task`` with Adam at ``lr`` until the validation MSE
    has not improved for PATIENCE epochs, or for ``max_epochs``; the network keeps its best
    epoch. Returns ``(net, stopped)``, `stopped` a `companion.selection.Stopped` whose history
    holds train_loss, val_loss and val_hs (the share within HS_TOLERANCE) for every epoch."""
    torch.set_flush_denormal(True)  # as in chapter 6: vanishing gradients stay fast
    train, val, _ = split(task)
    seed_everything(seed)
    net = make_net(model, "chrono")
    hs = {"hs": lambda pred, y: memory_sweep.within(pred, y, HS_TOLERANCE[task])}
    stopped = memory_sweep.fit_regressor(
        net,
        train,
        val,
        seed,
        lr,
        max_epochs,
        torch.device("cpu"),
        metrics=hs,
        batch=BATCH,
        patience=PATIENCE,
    )
    return net, stopped


def steps_to_criterion(task: str, val_hs: list[float]) -> int | str:
    """Steps of Adam until every validation sequence was within H&S's tolerance at the end of an
    epoch, or "" if that never happened."""
    per_epoch = -(-len(split(task)[0][0]) // BATCH)
    solved = [epoch for epoch, share in enumerate(val_hs, 1) if share == 1.0]
    return solved[0] * per_epoch if solved else ""


def run_one(task: str, model: str, seed: int, lr: float) -> tuple[dict, dict]:
    """(per-epoch curves, one row of the table), trained on the CPU with one thread."""
    torch.set_num_threads(1)
    start = time.process_time()
    net, stopped = train_one(task, model, seed, lr)
    x_te, y_te = split(task)[2]
    test_mse, test_acc = scores(net, x_te, y_te)
    _, hs = scores(net, x_te, y_te, HS_TOLERANCE[task])
    curves = {
        k: [round(r[k], 7) for r in stopped.history] for k in ("train_loss", "val_loss", "val_hs")
    }
    return curves, {
        "task": task,
        "model": model,
        "init": "chrono",
        "seed": seed,
        "lr": lr,
        "params": cm.count_parameters(net),
        "val_mse": f"{stopped.best_val_loss:.6g}",
        "test_mse": f"{test_mse:.6g}",
        "test_accuracy": f"{test_acc:.4f}",
        "test_accuracy_hs": f"{hs:.4f}",
        "steps_to_criterion": steps_to_criterion(task, curves["val_hs"]),
        "epochs": stopped.epochs,
        "best_epoch": stopped.best_epoch,
        "stop": stopped.reason,
        "cpu_seconds": f"{time.process_time() - start:.1f}",
    }


def describe(row: dict) -> str:
    """One line per finished run."""
    return (
        f"{row['task']:14s} {row['model']:7s} seed {row['seed']:3d} lr {row['lr']:g}: "
        f"test MSE {float(row['test_mse']):.2e}, within H&S {row['test_accuracy_hs']}, "
        f"criterion at {row['steps_to_criterion'] or '-'} steps, {row['epochs']} epochs "
        f"({row['stop']}; {row['cpu_seconds']} s CPU)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs of one run, writes nothing")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one thread each")
    args = parser.parse_args()
    if args.quick:
        _, stopped = train_one("multiplication", "minGRU", 0, 1e-2, max_epochs=2)
        print(f"minGRU on multiplication, 2 epochs: val MSE {stopped.best_val_loss:.4g}")
        return
    grid, chosen, results = at_best(
        ARMS,
        run_one,
        grid=LR_GRID,
        tune_seed=TUNE_SEED,
        seeds=SEEDS,
        jobs=args.jobs,
        describe=describe,
    )
    rows = save_at_best(
        grid,
        results,
        order=lambda k: (ARMS.index(k[0]), k[1]),
        columns=COLUMNS,
        out=OUT,
        out_grid=OUT_GRID,
        out_histories=OUT_HISTORIES,
        tune_seed=TUNE_SEED,
    )
    print(f"{len(rows)} runs and {len(grid)} tuning runs; rates chosen: {chosen}")


if __name__ == "__main__":
    main()
