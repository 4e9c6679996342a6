"""Precompute chapter 12's accuracy table: minGRU and minLSTM against the GRU and the LSTM on the
adding and multiplication problems at T = 100, at matched parameter counts, over five seeds.

The set-up is chapter 6's, with a shorter budget to fit a shared two-core machine: 3,000
sequences of one fixed draw, the last 500 held out for the test; of the first 2,500, 20% (500)
validate and 2,000 train. Two stacked layers and a linear head on the last hidden state, Adam
(learning rate 1e-2), the mean squared error, the gradient norm clipped at 1, batches of 32, and
EPOCHS = 6 epochs (378 steps of Adam: 63 batches an epoch, the last of 16 sequences). The seed
sets the initial weights and the order of the batches; the data are the same for every run.

The four layers get about 8,700 parameters each (HIDDEN): the GRU 30 units, the LSTM 26, the
minGRU 64, the minLSTM 52. Every model starts with the same kind of "remember" bias, the one
initialisation trick every one of them has an equivalent for: a forget-gate bias of +1 (LSTM,
minLSTM: b_f = 1), an update-gate bias that keeps the state (GRU: b_z = +1, since PyTorch's z is
the fraction kept; minGRU: b_z = -1, since its z is the fraction written).

minGRU and minLSTM are trained in their sequential mode, which computes the same function as the
scan (tests/test_minrnn.py checks it to 1e-12 in float64) and is faster on one CPU thread
at this length (see 12_speed_sweep.py).

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python book/scripts/12_accuracy_sweep.py

Output: ``book/data/12_accuracy_sweep.csv`` with columns task, model, seed, params, test_mse,
test_accuracy (within 0.04), val_mse, cpu_seconds.
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
from companion.init import set_gate_bias
from companion.sweep import write_csv

# Chapter 6's network and tolerance score (its file name starts with a digit, so no plain import;
# the chapter loads that script first, and a script run on its own loads it here).
memory_sweep = sys.modules.get("memory_sweep") or load_script(
    "memory_sweep", "scripts/06_memory_sweep.py", Path(__file__).resolve().parents[1]
)

LENGTH, N_ALL, N_TEST, VAL_FRACTION = 100, 3000, 500, 0.2
LAYERS, BATCH, EPOCHS, LR, CLIP = 2, 32, 6, 1e-2, 1.0
DATA_SEED, TOLERANCE = 0, 0.04
TASKS = {"adding": adding_problem, "multiplication": multiplication_problem}
HIDDEN = {"GRU": 30, "LSTM": 26, "minGRU": 64, "minLSTM": 52}
SEEDS = (0, 1, 2, 3, 4)
OUT = Path(__file__).resolve().parents[1] / "data" / "12_accuracy_sweep.csv"
COLUMNS = ["task", "model", "seed", "params", "test_mse", "test_accuracy", "val_mse", "cpu_seconds"]


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


# The "remember" bias of each layer: (gate, value), set with companion.init.set_gate_bias.
REMEMBER = {
    "GRU": ("z", 1.0),  # rows r, z, n: b_z = +1 keeps the state
    "LSTM": ("f", 1.0),  # rows i, f, g, o: b_f = +1
    "minGRU": ("z", -1.0),  # rows z, h: b_z = -1 writes little
    "minLSTM": ("f", 1.0),  # rows f, i, h: b_f = +1
}


def make_net(model: str) -> nn.Module:
    """Chapter 6's network for ``model``: two recurrent layers, batch first, with the "remember"
    bias, and a linear head on the last step: (N, L, 2) -> (N, 1)."""
    if model in ("GRU", "LSTM"):
        layer, kwargs = getattr(nn, model), {}
    else:  # chapter 12's layers, in their sequential mode (see the module's docstring)
        layer, kwargs = (cm.MinGRU if model == "minGRU" else cm.MinLSTM), {"mode": "sequential"}
    net = memory_sweep.LastStepRegressor(
        layer, hidden_size=HIDDEN[model], num_layers=LAYERS, **kwargs
    )
    set_gate_bias(net.rnn, *REMEMBER[model])
    return net


def scores(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(MSE, fraction within TOLERANCE) of ``net`` on (x, y)."""
    net.eval()
    with torch.no_grad():
        pred = net(x)
    net.train()
    return ((pred - y) ** 2).mean().item(), memory_sweep.within(pred, y, TOLERANCE).item()


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


def train_one(task: str, model: str, seed: int, epochs: int = EPOCHS) -> dict:
    """Train one model; return its row of the table (numbers, not yet formatted)."""
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = split(task)
    seed_everything(seed)
    net = make_net(model)
    seconds = fit_mse(net, x_tr, y_tr, seed, epochs)
    val_mse, _ = scores(net, x_va, y_va)
    test_mse, test_acc = scores(net, x_te, y_te)
    return {
        "task": task,
        "model": model,
        "seed": seed,
        "params": cm.count_parameters(net),
        "test_mse": test_mse,
        "test_accuracy": test_acc,
        "val_mse": val_mse,
        "cpu_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(SEEDS),
        help="a subset of the seeds (to run parts in parallel and join)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for seed in args.seeds:  # seeds outermost: a partial run still has every model
        for task in TASKS:
            for model in HIDDEN:
                row = train_one(task, model, seed)
                rows.append(row)
                print(
                    f"{task:14s} {model:7s} seed {seed}: test MSE {row['test_mse']:.2e}, "
                    f"acc {row['test_accuracy']:.3f} ({row['cpu_seconds']:.0f} s)",
                    flush=True,
                )
                write_csv(rows, args.out, COLUMNS)


if __name__ == "__main__":
    main()
