"""Precompute chapter 12's sLSTM table: revising a stored value when a stronger one arrives.

The task (``strongest_value``): each of the LENGTH steps shows a value v_t ~ U[-1, 1) and a
strength s_t. At MARKS random steps the strength is drawn from U[0.1, 1); everywhere else it is
0. The target is the value shown at the strongest mark. Reading left to right, a model must
store the first marked value, and then, at every later mark, compare its strength with the
strength of what it holds: overwrite if the new one is stronger, keep otherwise. This is the
"revise a storage decision" the xLSTM paper (Beck et al., 2024) motivates the exponential input
gate with: an sLSTM can weight each mark by exp(a·s_t) and normalise by n_t, a soft arg-max.

One layer of 32 units (LSTM 4,641 parameters with its head, sLSTM 4,513: within 3%), a linear
head on the last step, Adam, MSE, clipping at 1, batches of BATCH from N_TRAIN sequences. The
validation and test sequences come from other seeds than the training ones. Each arm (ARMS) at
its best, chapter 6's rule: Adam's rate chosen from LR_GRID by the validation MSE of a run on
TUNE_SEED; up to MAX_EPOCHS epochs, stopped after PATIENCE epochs without improvement, the best
epoch kept. The sLSTM starts with a forget-gate bias of +1 (the book found no better start for
it); the LSTM both so and from the chrono initialisation (T_max = LENGTH), its best start in
chapter 6.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python book/scripts/12_slstm_sweep.py --jobs 2

Outputs: ``book/data/12_slstm_sweep.csv`` (COLUMNS, one row per compared run),
``book/data/12_slstm_lr_grid.csv`` (the tuning runs) and ``book/data/12_slstm_histories.json``
({"model/init/seed": {"train_loss", "val_loss"}}, and "model/init/seed/lr" for the tuning runs).
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
from companion.init import chrono_init, set_gate_bias
from companion.selection import at_best, save_at_best

# The training loop of chapter 12's sweeps lives in the accuracy sweep, chapter 6's network in the
# script that one loads; the notebook loads them first, and a script run on its own loads them here.
accuracy_sweep = sys.modules.get("accuracy_sweep") or load_script(
    "accuracy_sweep", "scripts/12_accuracy_sweep.py", Path(__file__).resolve().parents[1]
)

LENGTH, MARKS, HIDDEN = 50, 4, 32
N_TRAIN, N_VAL, N_TEST, BATCH = 4000, 1000, 1000, 64  # clipping: chapter 6's CLIP, 1
TRAIN_SEED, TEST_SEED, VAL_SEED = 1, 2, 3
SEEDS = (0, 1, 2, 3, 4)
MODELS = ("LSTM", "sLSTM")
ARMS = [("LSTM", "forget1"), ("LSTM", "chrono"), ("sLSTM", "forget1")]
LR_GRID, TUNE_SEED = (1e-3, 3e-3, 1e-2), 100
MAX_EPOCHS, PATIENCE = 20, 4
DATA = Path(__file__).resolve().parents[1] / "data"
OUT, OUT_GRID = DATA / "12_slstm_sweep.csv", DATA / "12_slstm_lr_grid.csv"
OUT_HISTORIES = DATA / "12_slstm_histories.json"
COLUMNS = [
    "model",
    "init",
    "seed",
    "lr",
    "params",
    "val_mse",
    "test_mse",
    "epochs",
    "best_epoch",
    "stop",
    "cpu_seconds",
]


def strongest_value(n: int, length: int = LENGTH, marks: int = MARKS, seed: int = 0):
    """x (n, length, 2): value and strength per step; y (n, 1): the value at the strongest
    mark."""
    gen = torch.Generator().manual_seed(seed)
    values = torch.rand(n, length, generator=gen) * 2 - 1
    where = torch.rand(n, length, generator=gen).argsort(dim=1)[:, :marks]  # distinct steps
    strength = torch.zeros(n, length)
    strength.scatter_(1, where, 0.1 + 0.9 * torch.rand(n, marks, generator=gen))
    y = values.gather(1, strength.argmax(dim=1, keepdim=True))
    return torch.stack([values, strength], dim=-1), y


def last_step(model: str, hidden: int = HIDDEN, init: str = "forget1") -> nn.Module:
    """One recurrent layer (``model`` in MODELS) and a linear head on the last step:
    (N, T, 2) -> (N, 1). ``init`` "forget1" sets the forget-gate bias to +1; "chrono" (the LSTM
    only) is `companion.init.chrono_init` with T_max = LENGTH."""
    layer = nn.LSTM if model == "LSTM" else cm.SLSTM
    net = accuracy_sweep.memory_sweep.LastStepRegressor(layer, hidden_size=hidden, num_layers=1)
    if init == "chrono":
        chrono_init(net.rnn, LENGTH)
    elif init == "forget1":
        set_gate_bias(net.rnn, "f", 1.0)
    else:
        raise ValueError(f"last_step: expected init 'forget1' or 'chrono', got {init!r}")
    return net


def train_one(model: str, init: str, seed: int, lr: float, max_epochs: int = MAX_EPOCHS):
    """Train one arm with Adam at ``lr`` until the validation MSE stops improving (PATIENCE) or
    for ``max_epochs``; the network keeps its best epoch. Returns ``(net, stopped)``."""
    train = strongest_value(N_TRAIN, seed=TRAIN_SEED)
    val = strongest_value(N_VAL, seed=VAL_SEED)
    seed_everything(seed)
    net = last_step(model, init=init)
    stopped = accuracy_sweep.memory_sweep.fit_regressor(
        net, train, val, seed, lr, max_epochs, torch.device("cpu"), batch=BATCH, patience=PATIENCE
    )
    return net, stopped


def run_one(model: str, init: str, seed: int, lr: float) -> tuple[dict, dict]:
    """(per-epoch curves, one row of the table), on one thread."""
    torch.set_num_threads(1)
    start = time.process_time()
    net, stopped = train_one(model, init, seed, lr)
    x_te, y_te = strongest_value(N_TEST, seed=TEST_SEED)
    with torch.no_grad():
        test_mse = ((net(x_te) - y_te) ** 2).mean().item()
    curves = {k: [round(r[k], 7) for r in stopped.history] for k in ("train_loss", "val_loss")}
    return curves, {
        "model": model,
        "init": init,
        "seed": seed,
        "lr": lr,
        "params": cm.count_parameters(net),
        "val_mse": f"{stopped.best_val_loss:.6g}",
        "test_mse": f"{test_mse:.6g}",
        "epochs": stopped.epochs,
        "best_epoch": stopped.best_epoch,
        "stop": stopped.reason,
        "cpu_seconds": f"{time.process_time() - start:.1f}",
    }


def describe(row: dict) -> str:
    """One line per finished run."""
    return (
        f"{row['model']:5s} {row['init']:7s} seed {row['seed']:3d} lr {row['lr']:g}: test MSE "
        f"{float(row['test_mse']):.4f}, {row['epochs']} epochs ({row['stop']}; "
        f"{row['cpu_seconds']} s CPU)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one thread each")
    args = parser.parse_args()
    grid, chosen, results = at_best(
        ARMS,
        run_one,
        grid=LR_GRID,
        tune_seed=TUNE_SEED,
        seeds=SEEDS,
        jobs=args.jobs,
        describe=describe,
    )
    print(f"rates chosen: {chosen}")
    save_at_best(
        grid,
        results,
        order=lambda k: (ARMS.index(k[0]), k[1]),
        columns=COLUMNS,
        out=OUT,
        out_grid=OUT_GRID,
        out_histories=OUT_HISTORIES,
        tune_seed=TUNE_SEED,
    )


if __name__ == "__main__":
    main()
