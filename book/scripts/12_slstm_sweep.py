"""Precompute chapter 12's sLSTM table: revising a stored value when a stronger one arrives.

The task (``strongest_value``): each of the LENGTH steps shows a value v_t ~ U[-1, 1) and a
strength s_t. At MARKS random steps the strength is drawn from U[0.1, 1); everywhere else it is
0. The target is the value shown at the strongest mark. Reading left to right, a model must
store the first marked value, and then, at every later mark, compare its strength with the
strength of what it holds: overwrite if the new one is stronger, keep otherwise. This is the
"revise a storage decision" the xLSTM paper (Beck et al., 2024) motivates the exponential input
gate with: an sLSTM can weight each mark by exp(a·s_t) and normalise by n_t, a soft arg-max.

One layer of 32 units (LSTM 4,641 parameters with its head, sLSTM 4,513: within 3%), a linear
head on the last step, Adam at LR, MSE, clipping at 1, EPOCHS epochs over N_TRAIN sequences in
batches of BATCH. Both start with a forget-gate bias of +1. The validation and test sequences
come from other seeds than the training ones.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python book/scripts/12_slstm_sweep.py

Output: ``book/data/12_slstm_sweep.csv``: model, seed, params, test_mse, cpu_seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from companion import models as cm
from companion import seed_everything
from companion.book import load_script
from companion.init import set_gate_bias
from companion.sweep import write_csv

# The training loop of chapter 12's sweeps lives in the accuracy sweep, chapter 6's network in the
# script that one loads; the notebook loads them first, and a script run on its own loads them here.
accuracy_sweep = sys.modules.get("accuracy_sweep") or load_script(
    "accuracy_sweep", "scripts/12_accuracy_sweep.py", Path(__file__).resolve().parents[1]
)

LENGTH, MARKS, HIDDEN = 50, 4, 32
N_TRAIN, N_TEST, BATCH, EPOCHS, LR, CLIP = 4000, 1000, 64, 10, 1e-2, 1.0
TRAIN_SEED, TEST_SEED = 1, 2
SEEDS = (0, 1, 2, 3, 4)
MODELS = ("LSTM", "sLSTM")
OUT = Path(__file__).resolve().parents[1] / "data" / "12_slstm_sweep.csv"


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


def last_step(model: str, hidden: int = HIDDEN) -> nn.Module:
    """One recurrent layer (``model`` in MODELS) with a forget-gate bias of +1 and a linear head
    on the last step: (N, L, 2) -> (N, 1)."""
    layer = nn.LSTM if model == "LSTM" else cm.SLSTM
    net = accuracy_sweep.memory_sweep.LastStepRegressor(layer, hidden_size=hidden, num_layers=1)
    set_gate_bias(net.rnn, "f", 1.0)
    return net


def train_one(model: str, seed: int, epochs: int = EPOCHS) -> dict:
    """Train one model; return its row (test MSE on unseen sequences)."""
    x_tr, y_tr = strongest_value(N_TRAIN, seed=TRAIN_SEED)
    x_te, y_te = strongest_value(N_TEST, seed=TEST_SEED)
    seed_everything(seed)
    net = last_step(model)
    seconds = accuracy_sweep.fit_mse(net, x_tr, y_tr, seed, epochs, BATCH, LR, CLIP)
    with torch.no_grad():
        test_mse = ((net(x_te) - y_te) ** 2).mean().item()
    return {
        "model": model,
        "seed": seed,
        "params": cm.count_parameters(net),
        "test_mse": test_mse,
        "cpu_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for seed in SEEDS:
        for model in MODELS:
            rows.append(train_one(model, seed))
            print(rows[-1], flush=True)
            write_csv(rows, args.out)


if __name__ == "__main__":
    main()
