"""The benchmark suite (benchmarks/bench.py) at tiny sizes: it runs, writes the documented file,
computes the ratios, and its loader, goal report, crossover and plots work on any results file
(including the stored CPU results chapter 11 reads). Timings themselves are never asserted."""
from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import matplotlib
import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
STORED_CPU = ROOT / "book" / "data" / "11_bench_cpu.json"


def _import_bench():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


bench = _import_bench()
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    """One tiny run of the whole command line, with the compiled variant on the "eager" backend
    (Dynamo traces and recompiles as with inductor, without inductor's minutes of compiling)."""
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    csv_path = out.with_suffix(".csv")
    bench.main(["--device", "cpu", "--tiny", "--compile", "--compile-backend", "eager",
                "--out", str(out), "--csv", str(csv_path)])
    return out, csv_path


def test_tiny_run_writes_a_valid_results_file(tiny_results):
    out, csv_path = tiny_results
    results = bench.load_results(out)
    assert results["schema"] == bench.SCHEMA_VERSION
    device = results["device"]
    assert device["type"] == "cpu" and device["name"] and device["torch"] == torch.__version__
    assert device["threads"] >= 1
    assert len(results["load_average_before"]) == 3
    assert results["settings"]["repeats"] == 2 and results["settings"]["compile"]
    rows = results["forward_backward"]
    assert {r["kind"] for r in rows} == {"LSTM", "GRU"}
    assert {r["variant"] for r in rows} == {"torch.nn", "companion", "naive", "companion+compile"}
    for r in rows:
        assert len(r["times_ms"]) == 2 and r["median_ms"] > 0
        assert r["q1_ms"] <= r["median_ms"] <= r["q3_ms"]
        # every variant computes torch.nn's function from torch.nn's weights
        assert r["max_abs_diff"] < 1e-5, r
    header = csv_path.read_text().splitlines()[0]
    assert header.startswith("device,device_name,torch,section")


def test_ratios_are_to_torch_nn_at_the_same_shape(tiny_results):
    results = bench.load_results(tiny_results[0])
    rows = results["forward_backward"]
    for r in rows:
        base = next(b for b in rows if b["variant"] == "torch.nn" and b["kind"] == r["kind"]
                    and bench.Shape.of(b) == bench.Shape.of(r))
        assert r["ratio_to_torch"] == pytest.approx(r["median_ms"] / base["median_ms"], rel=6e-3)
    assert all(r["ratio_to_torch"] == 1 for r in rows if r["variant"] == "torch.nn")
    train = results["training"]
    assert {r["variant"] for r in train} == {"torch.nn", "companion", "naive"}
    for r in train:
        assert r["tokens_per_s"] == pytest.approx(r["sequences_per_s"] * r["length"], rel=2e-3)
        assert "ratio_to_torch" in r


def test_cuda_only_variants_are_skipped_with_a_note_on_cpu(tiny_results):
    results = bench.load_results(tiny_results[0])
    notes = " ".join(results["notes"])
    assert "companion+cudagraphs" in notes and "CUDA only" in notes and "bf16-autocast" in notes
    assert all(r["precision"] == "float32" for r in results["forward_backward"])
    pairs = bench._variants_for(torch.device("cuda"), compile=True, shape_compiles=True)
    assert ("companion+cudagraphs", "float32") in pairs and ("torch.nn", "bf16-autocast") in pairs
    with pytest.raises(RuntimeError, match="CUDA"):
        bench.build_layer("companion+cudagraphs", "LSTM", nn.LSTM(3, 4), torch.randn(2, 1, 3))


def test_compiled_layer_recompiles_at_a_new_length(tiny_results):
    results = bench.load_results(tiny_results[0])
    (probe,) = results["recompilation"]
    assert probe["variant"] == "companion+compile" and probe["new_length"] == 16
    assert probe["recompiled"] is True and probe["recompile_limit"] >= 1
    compiled = [r for r in results["forward_backward"] if r["variant"] == "companion+compile"]
    assert compiled and all(r["graphs_compiled"] >= 1 and "compile_s" in r for r in compiled)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_naive_layer_matches_torch_nn(kind):
    reference = getattr(nn, kind)(3, 5)
    x = torch.randn(7, 2, 3)
    out, state = bench.NaiveLayer(kind, reference)(x)
    expected, expected_state = reference(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    if kind == "LSTM":
        torch.testing.assert_close(state[1], expected_state[1], rtol=1e-5, atol=1e-6)
    assert sum(p.numel() for p in bench.NaiveLayer(kind, reference).parameters()) == \
        sum(p.numel() for p in reference.parameters()) - (bench.GATES[kind] * 5 if kind != "GRU" else 2 * 5)


def test_time_interleaved_rotates_the_order():
    calls = []
    runners = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = bench.time_interleaved(runners, repeats=3, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert calls[:3] == ["a", "b", "c"] and calls[3:6] == ["b", "c", "a"]


def _synthetic(device_type, ms_of_batch, batches=(1, 8, 64, 256)):
    rows = [{"section": "forward_backward", "group": "grid", "kind": "LSTM", "variant": v,
             "precision": "float32", "batch": b, "length": 50, "input_size": 64,
             "hidden_size": 256, "median_ms": ms_of_batch(b) * (1 if v == "torch.nn" else 1.5)}
            for v in ("torch.nn", "companion") for b in batches]
    results = {"schema": bench.SCHEMA_VERSION, "created": "2026-01-01T00:00:00+00:00",
               "device": {"type": device_type, "name": f"synthetic {device_type}", "torch": "2.13.0"},
               "settings": {}, "forward_backward": rows, "training": [], "goals": []}
    bench.validate_results(results)
    return results


def test_crossover_batch_on_synthetic_results():
    cpu = _synthetic("cpu", lambda b: 1.0 * b)
    # GPU: 10 ms of launches plus 0.1 ms a sequence: faster than the CPU from N > 11 on
    assert bench.crossover_batch(cpu, _synthetic("cuda", lambda b: 10 + 0.1 * b)) == 64
    assert bench.crossover_batch(cpu, _synthetic("cuda", lambda b: 0.5 * b)) == 1  # always faster
    assert bench.crossover_batch(cpu, _synthetic("cuda", lambda b: 2.0 * b)) is None  # never
    # faster at N=1 by chance, slower at 8, faster from 64 on: the crossover is where it stays
    wobbly = {1: 0.9, 8: 9.0, 64: 30.0, 256: 100.0}
    assert bench.crossover_batch(cpu, _synthetic("cuda", wobbly.__getitem__)) == 64
    assert bench.crossover_batch(cpu, _synthetic("cuda", lambda b: 10 + 0.1 * b),
                                 variant="companion") == 64
    with pytest.raises(ValueError, match="batch sizes measured on both"):
        bench.crossover_batch(cpu, _synthetic("cuda", lambda b: b, batches=(2, 4)))
    assert bench.batch_curve(cpu, "LSTM") == {1: 1.0, 8: 8.0, 64: 64.0, 256: 256.0}


def test_load_results_rejects_a_wrong_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"schema": bench.SCHEMA_VERSION, "device": {}}))
    with pytest.raises(ValueError, match="missing"):
        bench.load_results(path)
    good = _synthetic("cpu", float)
    bad = copy.deepcopy(good)
    del bad["forward_backward"][0]["median_ms"]
    with pytest.raises(ValueError, match="neither median_ms nor skipped"):
        bench.validate_results(bad)


def _check_stored_or_tiny(path):
    results = bench.load_results(path)
    report = bench.goal_report(results)
    assert all({"kind", "variant", "max_ratio", "ratio", "met"} <= set(g) for g in report)
    print(bench.format_table(results))
    print(bench.format_table(results, "training"))
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = bench.plot_ratios(results)
    assert fig.axes and fig.axes[0].get_yscale() == "log"
    ax = bench.plot_batch_curves({"torch.nn": (bench.batch_curve(results, "LSTM"), "grey", "-")})
    assert ax.get_xlabel().startswith("batch size")
    plt.close("all")
    return results, report


def test_loader_goals_and_plots_on_the_tiny_file(tiny_results):
    _check_stored_or_tiny(tiny_results[0])


@pytest.mark.skipif(not STORED_CPU.exists(), reason="no stored CPU results yet")
def test_loader_goals_and_plots_on_the_stored_cpu_results():
    results, report = _check_stored_or_tiny(STORED_CPU)
    assert results["device"]["type"] == "cpu"
    assert results["settings"]["preset"] == "full"
    # the file chapter 11 reads has every CPU goal's ratio, so the chapter can report on them
    assert {(g["kind"], g["variant"]) for g in report if g["ratio"] is not None} >= {
        ("LSTM", "companion"), ("GRU", "companion")}
    assert bench.batch_curve(results, "LSTM", "companion")
