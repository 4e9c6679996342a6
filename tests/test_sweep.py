"""companion.sweep: every run once, results in the runs' order, resumed runs kept, and a CSV
that reads back as written."""

from __future__ import annotations

import csv
import operator

import pytest

from companion.sweep import run_all, write_csv


def test_run_all_returns_every_result_in_the_runs_order(capsys) -> None:
    runs = [(2, 3), (4, 5), (1, 7)]
    got = run_all(
        operator.mul, runs, jobs=2, first=lambda r: -r[0], describe=lambda r, v: f"{r}={v}"
    )
    assert list(got.items()) == [((2, 3), 6), ((4, 5), 20), ((1, 7), 7)]
    lines = capsys.readouterr().out.splitlines()
    # submitted longest (largest first element) first, and reported in that order
    assert [line.split(" [")[0] for line in lines] == ["(4, 5)=20", "(2, 3)=6", "(1, 7)=7"]
    assert all(line.endswith("s wall so far]") for line in lines)


def test_run_all_does_not_repeat_finished_runs(capsys) -> None:
    got = run_all(operator.mul, [(2, 3), (4, 5)], done={(2, 3): "kept"})
    assert got == {(2, 3): "kept", (4, 5): 20}
    assert capsys.readouterr().out == ""  # no describe, no line


def test_run_all_checks_jobs() -> None:
    with pytest.raises(ValueError, match=r"run_all: expected jobs >= 1, got 0"):
        run_all(operator.mul, [(1, 2)], jobs=0)


def test_write_csv_round_trip(tmp_path, capsys) -> None:
    rows = [{"cell": "LSTM", "seed": 0, "mse": 0.000123456789, "acc": "0.9500"}]
    out = write_csv(rows, tmp_path / "deep" / "sweep.csv")
    with open(out, newline="") as f:
        assert list(csv.DictReader(f)) == [
            {"cell": "LSTM", "seed": "0", "mse": "0.000123457", "acc": "0.9500"}
        ]
    assert capsys.readouterr().out == f"wrote 1 rows to {out}\n"
    write_csv(rows, out, columns=["seed", "cell", "mse", "acc"])
    assert out.read_text().splitlines()[0] == "seed,cell,mse,acc"
    with pytest.raises(ValueError, match="write_csv: expected at least one row"):
        write_csv([], out)
