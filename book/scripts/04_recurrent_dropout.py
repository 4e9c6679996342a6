"""Precompute chapter 4's comparison: dropout between layers only, or DropConnect on W_hh too.

The task is the chapter's one-step forecast of a noisy sine (period 20 steps, noise 0.2, windows of
20 values, the next clean value as the target), split in time into training, validation and test
parts. Every model is a two-layer LSTM of 32 units with a linear head on its last output, trained
with Adam (learning rate 5e-3, gradients clipped at norm 1) for EPOCHS epochs in batches of 32.
Two regularisers, each at every rate of RATES:

- "between layers": ``nn.LSTM(num_layers=2, dropout=p)``, the recipe of Zaremba et al. (2014)
  and the book's default; rate 0 is no dropout at all;
- "between layers + W_hh": the same, and also DropConnect on every recurrent matrix W_hh with
  the same p (``companion.weight_drop.WeightDropLSTM``, the weight drop of AWD-LSTM).

The rate is chosen on the validation windows (the same grid for both); the test MSE decides.

The notebook `book/04_lstm_in_practice.ipynb` imports `sine_task` and `train_one` from this file,
loads the result, plots it, and re-runs one point of each side live.

Run from the repository root (about 3 CPU-minutes; it writes one small CSV):

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python book/scripts/04_recurrent_dropout.py

The file is `book/data/04_recurrent_dropout.csv`, with columns regulariser, rate, seed, val_mse,
test_mse and cpu_seconds (the CPU time of the run, one thread).
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from companion import seed_everything
from companion.data import make_windows, sine_waves, split_by_time
from companion.train import evaluate, fit
from companion.weight_drop import WeightDropLSTM

PERIOD, LENGTH, NOISE, WINDOW = 20, 800, 0.2, 20
HIDDEN, LAYERS, EPOCHS, LR, CLIP, BATCH = 32, 2, 40, 5e-3, 1.0, 32
REGULARISERS = ("between layers", "between layers + W_hh")
RATES = (0.0, 0.1, 0.25, 0.5)
SEEDS = (0, 1, 2, 3, 4)
OUT = Path(__file__).resolve().parents[1] / "data" / "04_recurrent_dropout.csv"
COLUMNS = ["regulariser", "rate", "seed", "val_mse", "test_mse", "cpu_seconds"]


def sine_task() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The chapter's noisy sine as windows: {"train"|"val"|"test": (X (M, 20, 1), Y (M, 1))}.

    X holds 20 noisy values, Y the clean value that follows them; the parts are split in time.
    """
    clean = sine_waves(n=1, length=LENGTH, period=PERIOD, seed=0)[0]
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    noisy = clean + NOISE * noise
    parts = zip(split_by_time(noisy, 0.7, 0.15), split_by_time(clean, 0.7, 0.15))
    task = {}
    for name, (noisy_part, clean_part) in zip(("train", "val", "test"), parts):
        task[name] = (make_windows(noisy_part, WINDOW)[0], make_windows(clean_part, WINDOW)[1])
    return task


class Forecaster(nn.Module):
    """Two LSTM layers and a linear head on the last output: (N, T, 1) -> (N, 1).

    ``weight_dropout`` > 0 drops the recurrent matrices too (``WeightDropLSTM``).
    """

    def __init__(self, dropout: float, weight_dropout: float = 0.0) -> None:
        super().__init__()
        kwargs = dict(num_layers=LAYERS, dropout=dropout, batch_first=True)
        if weight_dropout > 0:
            self.lstm = WeightDropLSTM(1, HIDDEN, weight_dropout=weight_dropout, **kwargs)
        else:
            self.lstm = nn.LSTM(1, HIDDEN, **kwargs)
        self.head = nn.Linear(HIDDEN, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one CPU thread, then restore the count: the sweep's runs and the chapter's
    live points use the same arithmetic, and a model this small trains fastest on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_one(task, regulariser: str, rate: float, seed: int, epochs: int = EPOCHS) -> dict:
    """Train one model from ``seed``; return {"val_mse", "test_mse"}, measured in eval mode."""
    if regulariser not in REGULARISERS:
        raise ValueError(
            f"train_one: expected a regulariser in {REGULARISERS}, got {regulariser!r}"
        )
    with one_thread():
        return _train(task, regulariser, rate, seed, epochs)


def _train(task, regulariser: str, rate: float, seed: int, epochs: int) -> dict:
    seed_everything(seed)
    weight_dropout = rate if regulariser == REGULARISERS[1] else 0.0
    model = Forecaster(dropout=rate, weight_dropout=weight_dropout)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*task["train"]),
        batch_size=BATCH,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    fit(
        model,
        loader,
        loss_fn=nn.MSELoss(),
        epochs=epochs,
        clip_grad_norm=CLIP,
        optimizer=torch.optim.Adam(model.parameters(), lr=LR),
        progress=False,
    )
    scores = {
        part: evaluate(model, [task[part]], loss_fn=nn.MSELoss())["loss"]
        for part in ("val", "test")
    }
    return {"val_mse": scores["val"], "test_mse": scores["test"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    task = sine_task()
    rows = []
    for regulariser in REGULARISERS:
        for rate in RATES:
            if rate == 0 and regulariser != REGULARISERS[0]:
                continue  # rate 0 is the same model for both
            for seed in SEEDS:
                start = time.process_time()
                result = train_one(task, regulariser, rate, seed)
                row = {"regulariser": regulariser, "rate": rate, "seed": seed, **result}
                row["cpu_seconds"] = round(time.process_time() - start, 2)
                rows.append(row)
                print(row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})


if __name__ == "__main__":
    main()
