"""Precompute chapter 6's sweep: success on the adding problem against sequence length.

For every cell (RNN, LSTM, GRU), every sequence length in LENGTHS and every seed in SEEDS, train
the chapter's network (two stacked recurrent layers of 30 units and a linear head on the last
hidden state) on the adding problem of Hochreiter & Schmidhuber (1997) with Adam and the mean
squared error, then score it on 1,000 held-out sequences as they did: the fraction predicted
within 0.04 of the target (`accuracy_0.04`), next to the MSE. Every run has the same budget:
the same training sequences per length, batch size, learning rate and number of epochs.

The notebook `book/06_long_range_memory.ipynb` imports `train_adding` from this file (so the
chapter and the sweep cannot drift apart), trains its three length-100 models of seed 0 with it
live, checks them against their stored rows, and plots the table.

Run from the repository root (a few minutes of CPU time on each core of an idle 2-core machine
with the default --jobs 2; on a heavily shared one the first run took 25 minutes of wall time):

    .venv/bin/python book/scripts/06_memory_sweep.py            # the full sweep
    .venv/bin/python book/scripts/06_memory_sweep.py --quick    # lengths 10 and 25, seed 0 only

The output is `book/data/06_memory_sweep.csv` (the --quick run writes nothing unless --out is
given), with columns cell, length, seed, val_mse (on the 1,000 held-out sequences after the last
epoch), accuracy_0.04 (the fraction of them predicted within 0.04), epochs, seconds (wall-clock
seconds of that run on the machine that ran it).

The stored numbers are CPU numbers computed with one thread per run, the setting under which
`make execute` and `make test` run the notebooks (OMP_NUM_THREADS=1), so the notebook repeats its
three rows exactly. With two threads the LSTM runs still repeat them, while the RNN and GRU runs
differ in the last digits (some sums are split differently between threads).
"""
from __future__ import annotations

import argparse
import csv
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from companion import seed_everything
from companion.data import adding_problem
from companion.train import fit

# The settings of the chapter (the notebook imports them from here).
HIDDEN, LAYERS = 30, 2
N_TRAIN, N_VAL, BATCH = 1600, 1000, 32  # 50 steps of Adam per epoch
EPOCHS, LR, CLIP = 10, 1e-2, 1.0
TOLERANCE = 0.04  # a prediction within 0.04 of the target counts as correct (H&S 1997)
VAL_SEED = 10_000  # the held-out sequences are the same for every cell and seed
CELLS = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
LENGTHS = (10, 25, 50, 100, 200)
SEEDS = (0, 1, 2)
DATA = Path(__file__).resolve().parents[1] / "data"
OUT = DATA / "06_memory_sweep.csv"
COLUMNS = ["cell", "length", "seed", "val_mse", f"accuracy_{TOLERANCE}", "epochs", "seconds"]


class LastStepRegressor(nn.Module):
    """Stacked recurrent layers and a linear head on the last hidden state: (N, L, 2) -> (N, 1).

    ``layer`` is a class with torch.nn.RNN's constructor (``nn.LSTM``, or its twin
    ``companion.models.LSTM``); the parameter names are the same for both, so a state dict
    trained with one loads into the other.
    """

    def __init__(self, layer, input_size=2, hidden_size=HIDDEN, num_layers=LAYERS):
        super().__init__()
        self.rnn = layer(input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x):
        out, _ = self.rnn(x)  # (N, L, H): the last layer's h_t at every step
        return self.head(out[:, -1])  # (N, 1) from h_L


def chrono_init(lstm, t_max):
    """Chrono initialisation of an LSTM's gate biases (Tallec & Ollivier, 2018).

    In every layer, b_f = log(u) with u drawn uniformly from [1, t_max - 1] for each unit, and
    b_i = -b_f: at the start a unit keeps its cell state for about u steps (f = u / (1 + u)) and
    writes into it with a small input gate, so that the units' memories span 1 to t_max steps.
    PyTorch adds bias_ih and bias_hh; the whole bias goes into bias_ih.
    """
    H = lstm.hidden_size
    with torch.no_grad():
        for k in range(lstm.num_layers):
            b_f = torch.empty(H).uniform_(1, t_max - 1).log()
            b_ih, b_hh = getattr(lstm, f"bias_ih_l{k}"), getattr(lstm, f"bias_hh_l{k}")
            b_ih[:H], b_ih[H:2 * H] = -b_f, b_f  # rows i, f, g, o
            b_hh[:2 * H] = 0.0
    return lstm


def within(pred, y, tolerance=TOLERANCE):
    """Fraction of predictions within ``tolerance`` of the target: (N, 1), (N, 1) -> scalar."""
    return ((pred - y).abs() < tolerance).float().mean()


def make_model(cell, length, layer=None):
    """The chapter's network for ``cell`` ("RNN", "LSTM" or "GRU"); ``layer`` overrides the
    torch.nn class. The LSTM gets the chrono initialisation with t_max = ``length``."""
    model = LastStepRegressor(layer or CELLS[cell])
    if cell == "LSTM":
        chrono_init(model.rnn, t_max=max(length, 3))
    return model


def train_adding(cell, length, seed, device=None, progress=False):
    """Train the chapter's network for ``cell`` on the adding problem of ``length`` steps.

    ``seed`` fixes the initial weights, the training sequences and their shuffling; the
    validation sequences depend on the length only. Returns ``(model, history)``: the trained
    model and companion's History with train_loss, val_loss and val_accuracy for every epoch.
    """
    x_train, y_train = adding_problem(N_TRAIN, length, seed=seed)
    x_val, y_val = adding_problem(N_VAL, length, seed=VAL_SEED)
    seed_everything(seed)
    model = make_model(cell, length).to(device)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=BATCH, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    history = fit(model, loader, loss_fn=nn.MSELoss(), optimizer=optimizer, epochs=EPOCHS,
                  val_data=[(x_val, y_val)], clip_grad_norm=CLIP, metrics={"accuracy": within},
                  device=device, progress=progress)
    return model, history


def run_one(cell, length, seed, threads=1):
    """One row of the table, trained on the CPU with ``threads`` threads."""
    torch.set_num_threads(threads)  # tiny matrices: more threads only add waiting on a busy CPU
    start = time.perf_counter()
    model, history = train_adding(cell, length, seed, device=torch.device("cpu"))
    seconds = time.perf_counter() - start
    row = {"cell": cell, "length": length, "seed": seed,
           "val_mse": f"{history[-1]['val_loss']:.6g}",
           f"accuracy_{TOLERANCE}": f"{history[-1]['val_accuracy']:.4f}",
           "epochs": len(history), "seconds": f"{seconds:.1f}"}
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: lengths 10 and 25, seed 0; writes nothing unless --out")
    parser.add_argument("--out", type=Path, default=None, help=f"the CSV (default {OUT})")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each")
    args = parser.parse_args()
    lengths, seeds = ((10, 25), (0,)) if args.quick else (LENGTHS, SEEDS)
    out = args.out or (None if args.quick else OUT)
    # Longest runs first, so that the pool is not left waiting for one long run at the end.
    runs = sorted(((c, n, s) for s in seeds for n in lengths for c in CELLS),
                  key=lambda r: -r[1] * (4 if r[0] == "GRU" else 1))
    start = time.perf_counter()
    results = {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {run: pool.submit(run_one, *run) for run in runs}
        for run, future in futures.items():
            row = results[run] = future.result()
            print(f"{row['cell']:4s} length {row['length']:3d} seed {row['seed']}: val MSE "
                  f"{float(row['val_mse']):.2e}, accuracy {row[f'accuracy_{TOLERANCE}']} "
                  f"({row['seconds']} s; {time.perf_counter() - start:.0f} s so far)", flush=True)
    rows = [results[c, n, s] for s in seeds for n in lengths for c in CELLS]
    print(f"{len(rows)} runs in {time.perf_counter() - start:.0f} s of wall time")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
