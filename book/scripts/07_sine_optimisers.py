"""Precompute chapter 7's optimiser comparison on sine waves: L-BFGS against Adam, several seeds.

The waves follow PyTorch's time_sequence_prediction example, sin(t / 20) (a period of
2 pi 20, about 125.7 steps), with a phase drawn uniformly from [0, 2 pi) for each wave, so that
no two waves are alike. Waves 0-2 are the test set, 3-9 the validation set, 10-99 the training
set; models train on the first P_TRAIN steps of the training waves, full batch, at an equal
budget of BUDGET loss-and-gradient evaluations:

- L-BFGS as in the example (lr 0.8, 20 iterations per step, no line search), 3 steps;
- L-BFGS with a strong-Wolfe line search, as many steps as the budget allows (LINE_SEARCH_SEEDS);
- Adam at every learning rate of ADAM_LRS on GRID_SEEDS, a tuning seed that is not one of the
  compared seeds; the rate with the lowest validation MSE is then run on every seed of SEEDS, as
  is L-BFGS.

For every run (the seed draws the initial weights; the waves are fixed) it records
the loss after every evaluation, the validation MSE, the test MSE over all 999 teacher-forced steps
and over the steps after P_TRAIN, the MSE of a 1000-step rollout, and the first ROLLOUT_KEPT
steps of the rollout itself (rounded to 5 decimals), from which the notebook measures how far
each rollout follows the truth and why it leaves it. The notebook
`book/07_forecasting.ipynb` imports `sine_data`, `SineLSTM` and `train_sine` from this file and
re-runs one point live.

Run from the repository root (about 3 CPU-minutes on one thread; a stopped run resumes):

    OMP_NUM_THREADS=1 .venv/bin/python book/scripts/07_sine_optimisers.py

It writes `book/data/07_sine_optimisers.json`, a list of runs, each a dict with the keys
optimiser, lr, seed, init, losses, evaluations, stop_reason, val_mse, test_mse,
test_mse_late, test_mse_first, rollout_mse_100, rollout_mse, rollout (3 lists of ROLLOUT_KEPT
values) and cpu_seconds. init is "default" (PyTorch's initialisation, as in the example);
stop_reason is "budget" (all BUDGET evaluations used), "converged" (L-BFGS stopped by its own
tolerance tests) or "diverged" (a loss that is not finite).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from companion import seed_everything

N_WAVES, LENGTH, FUTURE, TIME_SCALE = 100, 1000, 1000, 20.0
TEST, VAL, TRAIN = slice(0, 3), slice(3, 10), slice(10, 100)
P_TRAIN, BUDGET, HIDDEN = 250, 60, 51
ADAM_LRS = (0.005, 0.01, 0.02, 0.05, 0.1)
SEEDS = (0, 1, 2, 3, 4)
GRID_SEEDS = (5, 6)  # the seeds on which Adam's rate is chosen: none of the compared SEEDS
LINE_SEARCH_SEEDS = (0,)
FIRST = 25  # test_mse_first: the MSE over the first FIRST teacher-forced steps (the warm-up)
ROLLOUT_KEPT = 300  # rollout steps stored per test wave
OUT = Path(__file__).resolve().parents[1] / "data" / "07_sine_optimisers.json"


def sine_data(seed: int = 0, length: int = LENGTH + FUTURE) -> tuple[torch.Tensor, np.ndarray]:
    """(waves, phases): waves (N_WAVES, length) float32 sin(t / 20 + phase), phases (N_WAVES,).

    Each phase is drawn uniformly from [0, 2 pi) in float64, so every wave is different.
    """
    phases = np.random.default_rng(seed).uniform(0, 2 * math.pi, N_WAVES)
    t = np.arange(length, dtype=np.float64)
    waves = np.sin(t[None, :] / TIME_SCALE + phases[:, None])
    return torch.tensor(waves, dtype=torch.float32), phases


class SineLSTM(nn.Module):
    """Two stacked LSTM layers of `hidden_size` and a linear head: nn.LSTM(1, H, num_layers=2).

    forward(x (N, L), future) -> (N, L + future): entry t predicts x_{t+1}; the last `future`
    entries feed each prediction back in as the next input (the rollout).
    """

    def __init__(self, hidden_size: int = HIDDEN):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden_size, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x, future: int = 0):
        out, state = self.lstm(x.unsqueeze(-1))
        preds = [self.head(out).squeeze(-1)]
        y = preds[0][:, -1:]
        for _ in range(future):
            out, state = self.lstm(y.unsqueeze(-1), state)
            y = self.head(out[:, -1])
            preds.append(y)
        return torch.cat(preds, dim=1)


def make_optimizer(name: str, params, lr: float):
    if name == "L-BFGS":
        return torch.optim.LBFGS(params, lr=lr, max_iter=20)
    if name == "L-BFGS, line search":
        return torch.optim.LBFGS(params, lr=lr, max_iter=20, line_search_fn="strong_wolfe")
    return torch.optim.Adam(params, lr=lr)


@torch.no_grad()
def scores(model, waves) -> dict:
    """Validation and test MSEs of a trained model (teacher forced), and of its rollout."""
    model.eval()
    val = waves[VAL, :LENGTH]
    val_mse = F.mse_loss(model(val[:, :-1]), val[:, 1:]).item()
    test = waves[TEST]
    pred = model(test[:, : LENGTH - 1], future=FUTURE)  # (3, 1999)
    err = (pred - test[:, 1:]) ** 2
    return {
        "val_mse": val_mse,
        "test_mse": err[:, : LENGTH - 1].mean().item(),
        "test_mse_late": err[:, P_TRAIN : LENGTH - 1].mean().item(),
        "test_mse_first": err[:, :FIRST].mean().item(),
        "rollout_mse_100": err[:, LENGTH - 1 : LENGTH + 99].mean().item(),
        "rollout_mse": err[:, LENGTH - 1 :].mean().item(),
        "rollout": [
            [round(v, 5) for v in row]
            for row in pred[:, LENGTH - 1 : LENGTH - 1 + ROLLOUT_KEPT].tolist()
        ],
    }


def train_sine(optimiser: str, lr: float, seed: int, waves=None) -> tuple[SineLSTM, dict]:
    """Train a fresh SineLSTM full batch for BUDGET loss-and-gradient evaluations."""
    waves = sine_data()[0] if waves is None else waves
    x, y = waves[TRAIN, : P_TRAIN - 1], waves[TRAIN, 1:P_TRAIN]
    seed_everything(seed)
    model = SineLSTM()
    opt = make_optimizer(optimiser, model.parameters(), lr)
    losses = []

    def closure():
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        losses.append(loss.item())
        return loss

    start, stop_reason = time.process_time(), "budget"
    while len(losses) < BUDGET:
        before = len(losses)
        if optimiser.startswith("L-BFGS"):
            opt.param_groups[0]["max_eval"] = BUDGET - len(losses)  # never past the budget
            opt.step(closure)
        else:
            closure()
            opt.step()
        if len(losses) == before:  # L-BFGS has converged by its own tests
            stop_reason = "converged"
            break
        if not math.isfinite(losses[-1]):
            stop_reason = "diverged"
            break
    record = {"optimiser": optimiser, "lr": lr, "seed": seed, "init": "default"}
    record.update(losses=losses, evaluations=len(losses), stop_reason=stop_reason)
    record.update(scores(model, waves))
    record["cpu_seconds"] = round(time.process_time() - start, 1)
    return model, record


def run_or_reuse(runs: list, optimiser: str, lr: float, seed: int, waves) -> dict:
    """The stored run with these settings if there is one (a resumed sweep), else a new one."""
    for record in runs:
        if (record["optimiser"], record["lr"], record["seed"]) == (optimiser, lr, seed):
            return record
    _, record = train_sine(optimiser, lr, seed, waves)
    runs.append(record)
    print(
        f"{optimiser:20s} lr {lr:<6} seed {seed}: val {record['val_mse']:.2e}, test "
        f"{record['test_mse']:.2e}, {len(record['losses'])} evaluations, "
        f"{record['cpu_seconds']} CPU s",
        flush=True,
    )
    OUT.write_text(json.dumps(runs) + "\n")
    return record


def best_adam_lr(runs: list) -> float:
    """The Adam learning rate of ADAM_LRS with the lowest mean validation MSE over GRID_SEEDS."""

    def mean_val(lr):
        vals = [
            r["val_mse"]
            for r in runs
            if r["optimiser"] == "Adam" and r["lr"] == lr and r["seed"] in GRID_SEEDS
        ]
        return sum(vals) / len(vals)

    return min(ADAM_LRS, key=mean_val)


def main() -> None:
    torch.set_num_threads(1)
    waves = sine_data()[0]
    runs = json.loads(OUT.read_text()) if OUT.exists() else []
    for seed in LINE_SEARCH_SEEDS:  # the line-search variant, beside L-BFGS on the same seed
        for optimiser, lr in [("L-BFGS", 0.8), ("L-BFGS, line search", 0.8)]:
            run_or_reuse(runs, optimiser, lr, seed, waves)
    for seed in GRID_SEEDS:  # Adam's whole grid on the tuning seed
        for lr in ADAM_LRS:
            run_or_reuse(runs, "Adam", lr, seed, waves)
    lr = best_adam_lr(runs)
    print(f"Adam's learning rate, chosen on the validation waves: {lr}", flush=True)
    for seed in SEEDS:  # the comparison: L-BFGS against Adam at the chosen rate
        run_or_reuse(runs, "L-BFGS", 0.8, seed, waves)
        run_or_reuse(runs, "Adam", lr, seed, waves)


if __name__ == "__main__":
    main()
