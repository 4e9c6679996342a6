"""Chapter 4's sweep script: its task holds no leaked window, its two regularisers compare the
same network, and it refuses a regulariser it does not know. Nothing here trains a model for long;
the sweep itself is run by hand and stored in book/data/04_recurrent_dropout.csv."""

from __future__ import annotations

import csv

import pytest
import torch

from companion.book import book_file, load_script

sweep = load_script("recurrent_dropout", "scripts/04_recurrent_dropout.py", root="book")


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_task_parts_are_unseen_windows() -> None:
    task = sweep.sine_task()
    (x_train, y_train), (x_test, _) = task["train"], task["test"]
    assert x_train.shape[1:] == (sweep.WINDOW, 1) and y_train.shape[1:] == (1,)
    assert not (x_test[:, None] == x_train[None]).all(dim=(2, 3)).any()


def test_both_regularisers_train_the_same_network() -> None:
    plain, dropped = sweep.Forecaster(0.25), sweep.Forecaster(0.25, weight_dropout=0.25)
    assert count(plain) == count(dropped)


def test_unknown_regulariser_is_refused() -> None:
    with pytest.raises(ValueError, match="expected a regulariser in"):
        sweep.train_one(sweep.sine_task(), "zoneout", 0.1, seed=0, epochs=1)


def test_stored_sweep_is_complete() -> None:
    with open(book_file("data/04_recurrent_dropout.csv", root="book")) as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == sweep.COLUMNS
    cells = {(r["regulariser"], float(r["rate"])) for r in rows}
    want = {(sweep.REGULARISERS[0], 0.0)} | {
        (name, rate) for name in sweep.REGULARISERS for rate in sweep.RATES[1:]
    }
    assert cells == want
    assert len(rows) == len(want) * len(sweep.SEEDS)


def test_one_thread_restores_the_thread_count() -> None:
    before = torch.get_num_threads()
    with sweep.one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
