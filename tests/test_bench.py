"""The benchmark (benchmarks/bench.py) at tiny sizes, and the results API (companion.benchmark):
it runs, writes the documented file, computes the ratios, refuses results measured under load or
inconsistent with the work, and its goal report, crossover, tables and plots work on any results
file, including the stored CPU results chapter 11 reads. Timings themselves are never asserted,
except the stored ones' consistency."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import bench  # benchmarks/bench.py, on pytest's pythonpath (pyproject.toml)
import matplotlib
import pytest
import torch
from torch import nn

from companion import benchmark

ROOT = Path(__file__).resolve().parents[1]
STORED_CPU = [ROOT / "book" / "data" / f"11_bench_cpu_t{n}.json" for n in (1, 2)]

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    """One tiny run of the whole command line, with the compiled variant on the "eager" backend
    (Dynamo traces and recompiles as with inductor, without inductor's minutes of compiling)."""
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    csv_path = out.with_suffix(".csv")
    bench.main(
        [
            "--device",
            "cpu",
            "--tiny",
            "--compile",
            "--compile-backend",
            "eager",
            "--threads",
            "1",
            "--out",
            str(out),
            "--csv",
            str(csv_path),
        ]
    )
    return out, csv_path


def test_tiny_run_records_its_conditions_and_the_spread(tiny_results):
    out, csv_path = tiny_results
    results = benchmark.load_results(out)
    assert results["schema"] == benchmark.SCHEMA_VERSION == 2
    device = results["device"]
    assert device["type"] == "cpu" and device["name"] and device["torch"] == torch.__version__
    assert device["threads"] == 1 and device["cpu_count"] >= 1
    assert len(results["load_average_before"]) == len(results["load_average_after"]) == 3
    assert results["settings"]["repeats"] == 2 and results["settings"]["compile"]
    assert isinstance(results["conditions"], list)
    rows = results["forward_backward"]
    assert {r["kind"] for r in rows} == {"LSTM", "GRU"}
    assert {r["variant"] for r in rows} == {
        "torch.nn",
        "companion",
        "bare",
        "naive",
        "companion+fused",
        "companion+compile",
    }
    assert {r["group"] for r in rows} == {"goal", "floor", "grid", "compile"}
    for r in rows:
        assert len(r["times_ms"]) == 2
        assert 0 < r["min_ms"] <= r["q1_ms"] <= r["median_ms"] <= r["q3_ms"] <= r["max_ms"]
        # every variant computes torch.nn's function from torch.nn's weights
        assert r["max_abs_diff"] < 1e-5, r
    header = csv_path.read_text().splitlines()[0]
    assert header.startswith("device,device_name,torch,threads,section")


def test_ratios_are_to_torch_nn_at_the_same_shape(tiny_results):
    results = benchmark.load_results(tiny_results[0])
    rows = results["forward_backward"]
    for r in rows:
        base = next(
            b
            for b in rows
            if b["variant"] == "torch.nn"
            and (b["kind"], b["group"]) == (r["kind"], r["group"])
            and benchmark.Shape.of(b) == benchmark.Shape.of(r)
        )
        assert r["ratio_to_torch"] == pytest.approx(r["median_ms"] / base["median_ms"], rel=6e-3)
        shape = benchmark.Shape.of(r)
        measured = benchmark.ratio(results, r["kind"], r["variant"], shape, group=r["group"])
        assert measured == pytest.approx(r["ratio_to_torch"], rel=6e-3)
    train = results["training"]
    assert {r["variant"] for r in train} == {"torch.nn", "companion", "companion+fused"}
    for r in train:
        assert r["tokens_per_s"] == pytest.approx(r["sequences_per_s"] * r["length"], rel=2e-3)


def test_cuda_only_variants_are_not_run_on_a_cpu(tiny_results):
    results = benchmark.load_results(tiny_results[0])
    assert all(r["precision"] == "float32" for r in results["forward_backward"])
    pairs = bench._pairs(torch.device("cuda"), ["torch.nn", "companion+cudagraphs"])
    assert ("companion+cudagraphs", "float32") in pairs and ("torch.nn", "bf16-autocast") in pairs
    assert bench._pairs(torch.device("cpu"), ["torch.nn", "companion+cudagraphs"]) == [
        ("torch.nn", "float32")
    ]
    with pytest.raises(RuntimeError, match="CUDA"):
        bench.build_layer("companion+cudagraphs", "LSTM", nn.LSTM(3, 4), torch.randn(2, 1, 3))


def test_compiled_layer_recompiles_at_every_new_length_and_the_fused_one_never(tiny_results):
    results = benchmark.load_results(tiny_results[0])
    probes = {(p["kind"], p["variant"]): p for p in results["recompilation"]}
    for kind in ("LSTM", "GRU"):
        compiled, fast = probes[kind, "companion+compile"], probes[kind, "companion+fused"]
        assert compiled["lengths"] == fast["lengths"] == [6, 9]
        assert compiled["graphs_compiled"][1] >= 1 and compiled["recompilations"] == 1
        assert fast["graphs_compiled"] == [0, 0] and fast["recompilations"] == 0
    compiled = [r for r in results["forward_backward"] if r["variant"] == "companion+compile"]
    assert compiled and all(r["graphs_compiled"] >= 1 and "compile_s" in r for r in compiled)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_naive_and_bare_layers_match_torch_nn(kind):
    reference = getattr(nn, kind)(3, 5)
    x = torch.randn(7, 2, 3)
    expected, expected_state = reference(x)
    for cls in (bench.NaiveLayer, bench.BareLayer):
        out, state = cls(kind, reference)(x)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    out, state = bench.NaiveLayer(kind, reference)(x)
    if kind == "LSTM":
        torch.testing.assert_close(state[1], expected_state[1], rtol=1e-5, atol=1e-6)
    folded = bench.GATES[kind] * 5 if kind != "GRU" else 2 * 5
    assert (
        sum(p.numel() for p in bench.NaiveLayer(kind, reference).parameters())
        == sum(p.numel() for p in reference.parameters()) - folded
    )


def test_time_interleaved_rotates_the_order():
    calls = []
    runners = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = bench.time_interleaved(runners, repeats=3, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert calls[:3] == ["a", "b", "c"] and calls[3:6] == ["b", "c", "a"]


def test_out_paths_name_the_thread_count(tmp_path):
    cpu = torch.device("cpu")
    assert bench._out_path(None, cpu, 2, True, "full").name == "11_bench_cpu_t2.json"
    assert bench._out_path(None, cpu, 1, False, "full").name == "11_bench_cpu_t1.json"
    assert bench._out_path(None, cpu, 1, False, "quick") is None
    assert bench._out_path(str(tmp_path / "r.json"), cpu, 2, True, "quick").name == "r_t2.json"
    assert bench._out_path(str(tmp_path / "r.json"), cpu, 2, False, "quick").name == "r.json"


def _row(variant, length, median, spread=0.05, kind="LSTM", batch=8, hidden=256):
    return {
        "section": "forward_backward",
        "group": "grid",
        "kind": kind,
        "variant": variant,
        "precision": "float32",
        "batch": batch,
        "length": length,
        "input_size": 64,
        "hidden_size": hidden,
        "min_ms": median * (1 - spread),
        "median_ms": median,
        "max_ms": median * (1 + spread),
        "q1_ms": median,
        "q3_ms": median,
    }


def _synthetic(device_type, ms_of_batch, batches=(1, 8, 64, 256), load=(0.3, 0.2, 0.1)):
    rows = [
        _row(v, 50, ms_of_batch(b) * (1 if v == "torch.nn" else 1.5), batch=b)
        for v in ("torch.nn", "companion")
        for b in batches
    ]
    results = {
        "schema": benchmark.SCHEMA_VERSION,
        "created": "2026-01-01T00:00:00+00:00",
        "device": {
            "type": device_type,
            "name": f"synthetic {device_type}",
            "torch": "2.13.0",
            "threads": 1,
            "cpu_count": 2,
        },
        "settings": {},
        "forward_backward": rows,
        "training": [],
        "goals": [],
        "load_average_before": list(load),
        "load_average_after": list(load),
    }
    benchmark.validate_results(results)
    return results


def test_crossover_batch_on_synthetic_results():
    cpu = _synthetic("cpu", lambda b: 1.0 * b)
    # GPU: 10 ms of launches plus 0.1 ms a sequence: faster than the CPU from N > 11 on
    assert benchmark.crossover_batch(cpu, _synthetic("cuda", lambda b: 10 + 0.1 * b)) == 64
    assert benchmark.crossover_batch(cpu, _synthetic("cuda", lambda b: 0.5 * b)) == 1
    assert benchmark.crossover_batch(cpu, _synthetic("cuda", lambda b: 2.0 * b)) is None
    # faster at N=1 by chance, slower at 8, faster from 64 on: the crossover is where it stays
    wobbly = {1: 0.9, 8: 9.0, 64: 30.0, 256: 100.0}
    assert benchmark.crossover_batch(cpu, _synthetic("cuda", wobbly.__getitem__)) == 64
    with pytest.raises(ValueError, match="batch sizes measured on both"):
        benchmark.crossover_batch(cpu, _synthetic("cuda", lambda b: b, batches=(2, 4)))
    assert benchmark.batch_curve(cpu, "LSTM") == {1: 1.0, 8: 8.0, 64: 64.0, 256: 256.0}


def test_conditions_refuse_a_loaded_machine():
    assert benchmark.check_conditions(_synthetic("cpu", float)) == []
    busy = _synthetic("cpu", float, load=(7.6, 8.0, 9.2))
    problems = benchmark.check_conditions(busy)
    assert len(problems) == 2 and "above 2 cores" in problems[0]
    # the run's own threads count in the load after it: at the core count it is not refused
    full = _synthetic("cpu", float)
    full["load_average_after"] = [2.3, 1.5, 0.8]
    assert benchmark.check_conditions(full) == []


def test_conditions_refuse_a_longer_sequence_that_ran_faster():
    results = _synthetic("cpu", float)
    # the first benchmark's nn.LSTM at N=64, H=256: 602 ms at L=50, 399 ms at L=100
    results["forward_backward"] += [
        _row("torch.nn", 50, 602.0, batch=64),
        _row("torch.nn", 100, 399.0, batch=64),
    ]
    (problem,) = benchmark.check_conditions(results)
    assert "L=100 took 399.0 ms" in problem and "N=64" in problem
    # within the spread it is noise, not a contradiction
    results["forward_backward"][-1] = _row("torch.nn", 100, 590.0, batch=64)
    assert benchmark.check_conditions(results) == []


def test_load_results_rejects_a_wrong_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"schema": benchmark.SCHEMA_VERSION, "device": {}}))
    with pytest.raises(ValueError, match="missing"):
        benchmark.load_results(path)
    good = _synthetic("cpu", float)
    old = copy.deepcopy(good)
    old["schema"] = 1
    with pytest.raises(ValueError, match="expected schema 2"):
        benchmark.validate_results(old)
    bad = copy.deepcopy(good)
    del bad["forward_backward"][0]["min_ms"]
    with pytest.raises(ValueError, match="neither min_ms"):
        benchmark.validate_results(bad)


def _tables_and_plots(results):
    import matplotlib.pyplot as plt

    report = benchmark.goal_report(results)
    assert all(
        {"kind", "variant", "baseline", "max_ratio", "ratio", "met"} <= set(g) for g in report
    )
    for text in (
        benchmark.format_table(results),
        benchmark.format_table(results, "training"),
        benchmark.ratio_table({"1 thread": results}),
    ):
        assert max(len(line) for line in text.splitlines()) <= 80
    fig = benchmark.plot_ratios(results)
    assert fig.axes and fig.axes[0].get_yscale() == "log"
    curve = benchmark.batch_curve(results, "LSTM", hidden_size=5, length=6, input_size=2)
    ax = benchmark.plot_batch_curves({"torch.nn": (curve, "grey", "-")})
    assert ax.get_xlabel().startswith("batch size")
    plt.close("all")
    return report


def test_tables_and_plots_on_the_tiny_file(tiny_results):
    _tables_and_plots(benchmark.load_results(tiny_results[0]))


def test_the_script_runs_from_the_command_line(tmp_path):
    out = tmp_path / "t.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench.py"),
            "--tiny",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert benchmark.load_results(out)["settings"]["preset"] == "tiny"


@pytest.mark.parametrize("path", STORED_CPU, ids=lambda p: p.name)
def test_the_stored_cpu_results_were_measured_under_fair_conditions(path):
    assert path.exists(), (
        "measure them on a quiet machine: python benchmarks/bench.py --device cpu --threads 1 2"
    )
    results = benchmark.load_results(path)
    assert results["device"]["type"] == "cpu"
    assert results["device"]["threads"] == int(path.stem[-1])
    assert results["settings"]["preset"] == "full", "store the full preset, not --quick"
    assert benchmark.check_conditions(results) == []
    report = _tables_and_plots(results)
    # the file chapter 11 reads has every CPU goal's ratio, so the chapter can report on them
    assert all(g["ratio"] is not None for g in report)
    probes = {(p["kind"], p["variant"]) for p in results["recompilation"]}
    assert probes >= {("LSTM", "companion+fused"), ("GRU", "companion+fused")}
