"""fit_until_plateau and choose_learning_rate: stop reasons, restored weights, the choice."""

import json
import math

import pytest
import torch
from torch import nn

from companion import selection
from companion.selection import choose_learning_rate, fit_until_plateau


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    return (x[:48], y[:48]), (x[48:], y[48:])


def _run(lr, max_epochs, patience, seed=0):
    torch.manual_seed(seed)
    model = nn.Linear(3, 1)
    train, val = _problem()
    stopped = fit_until_plateau(
        model,
        [train],
        val_data=[val],
        max_epochs=max_epochs,
        patience=patience,
        loss_fn=nn.MSELoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=lr),
    )
    return model, stopped


def test_a_run_that_keeps_improving_uses_its_budget():
    _, stopped = _run(lr=0.05, max_epochs=20, patience=3)
    assert stopped.reason == "budget"
    assert stopped.epochs == 20 and stopped.best_epoch == 20


def test_a_run_that_overshoots_stops_on_a_plateau_at_its_best_weights():
    # Too large a step for this problem: the loss grows after the first epochs.
    model, stopped = _run(lr=1.2, max_epochs=50, patience=3)
    assert stopped.reason in ("plateau", "diverged")
    assert stopped.epochs < 50
    _, val = _problem()
    with torch.no_grad():
        now = nn.functional.mse_loss(model(val[0]), val[1]).item()
    assert now == pytest.approx(stopped.best_val_loss, rel=1e-6)
    assert stopped.best_val_loss == min(r["val_loss"] for r in stopped.history)


def test_epochs_one_at_a_time_match_one_fit_call():
    from companion.train import fit

    _, stopped = _run(lr=0.05, max_epochs=5, patience=5)
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    train, val = _problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    h = fit(
        model,
        [train],
        loss_fn=nn.MSELoss(),
        optimizer=opt,
        epochs=5,
        val_data=[val],
        progress=False,
    )
    assert [r["val_loss"] for r in h] == [r["val_loss"] for r in stopped.history]


def test_choose_learning_rate_skips_diverged_rates_and_reports_every_score():
    scores = {1e-3: 0.5, 1e-2: 0.2, 1e-1: math.inf}
    lr, seen = choose_learning_rate(list(scores), scores.__getitem__)
    assert lr == 1e-2 and seen == scores
    with pytest.raises(ValueError, match="diverged"):
        choose_learning_rate([1.0], lambda lr: math.nan)
    with pytest.raises(ValueError, match="expected"):
        choose_learning_rate([], lambda lr: 0.0)


@pytest.mark.parametrize(
    "kwargs", [{"max_epochs": 0, "patience": 1}, {"max_epochs": 3, "patience": 0}]
)
def test_bad_budget_gets_a_clear_error(kwargs):
    with pytest.raises(ValueError, match="expected"):
        fit_until_plateau(nn.Linear(1, 1), [], val_data=[], **kwargs)


def _toy_run(name, seed, lr):
    """A fake run whose validation loss is smallest at lr 0.01 (and inf at 1.0: diverged)."""
    loss = math.inf if lr == 1.0 else abs(math.log10(lr) + 2) + seed / 1000
    return {"lr": lr}, {"val_loss": loss, "arm": name, "seed": seed}


def test_at_best_tunes_on_its_own_seed_and_runs_every_seed_at_the_choice():
    from companion.selection import at_best

    tuning, chosen, results = at_best(
        [("a",), ("b",)], _toy_run, grid=[0.001, 0.01, 1.0], tune_seed=100, seeds=[0, 1]
    )
    assert chosen == {("a",): 0.01, ("b",): 0.01}
    assert len(tuning) == 6 and all(row["seed"] == 100 for _, row in tuning.values())
    assert sorted(results) == [(("a",), 0), (("a",), 1), (("b",), 0), (("b",), 1)]
    assert all(curves["lr"] == 0.01 for curves, _ in results.values())
    with pytest.raises(ValueError, match="tuning seed"):
        at_best([("a",)], _toy_run, grid=[0.01], tune_seed=0, seeds=[0, 1])


def test_save_at_best_writes_rows_in_order_the_grid_and_every_history(tmp_path) -> None:
    arms = [("LSTM", "chrono"), ("GRU", "memory")]
    tuning = {
        (arm, lr): ([lr], {"model": arm[0], "seed": 100, "lr": lr})
        for arm in arms
        for lr in (0.1, 1)
    }
    results = {
        (arm, seed): ([seed / 10], {"model": arm[0], "seed": seed, "lr": 1})
        for arm in reversed(arms)
        for seed in (1, 0)
    }
    out, grid, hist = tmp_path / "runs.csv", tmp_path / "grid.csv", tmp_path / "h.json"
    rows = selection.save_at_best(
        tuning,
        results,
        order=lambda k: (arms.index(k[0]), k[1]),
        columns=["model", "seed", "lr"],
        out=out,
        out_grid=grid,
        out_histories=hist,
        tune_seed=100,
    )
    assert [(r["model"], r["seed"]) for r in rows] == [
        ("LSTM", 0),
        ("LSTM", 1),
        ("GRU", 0),
        ("GRU", 1),
    ]
    assert out.read_text().splitlines() == [
        "model,seed,lr",
        "LSTM,0,1",
        "LSTM,1,1",
        "GRU,0,1",
        "GRU,1,1",
    ]
    assert grid.read_text().splitlines()[1:] == [
        "LSTM,100,0.1",
        "LSTM,100,1",
        "GRU,100,0.1",
        "GRU,100,1",
    ]
    histories = json.loads(hist.read_text())
    assert list(histories)[:4] == ["LSTM/chrono/0", "LSTM/chrono/1", "GRU/memory/0", "GRU/memory/1"]
    assert histories["GRU/memory/1"] == [0.1] and histories["LSTM/chrono/100/0.1"] == [0.1]
    assert len(histories) == 8
