"""The benchmark (benchmarks/bench.py) at tiny sizes, and the results API (companion.benchmark):
it runs, writes the documented file, computes the ratios, and its goal report, crossover, tables
and plots work on any results file. The loader is attacked: a run that shares its core with a
busy loop is refused and the same run alone on a core accepted; edited medians, a forged core
count, null loads and more work that ran faster are refused. Every stored timing file of
chapters 11 and 12 must load (be accepted). Timings themselves are never asserted."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import bench  # benchmarks/bench.py, on pytest's pythonpath (pyproject.toml)
import matplotlib
import pytest
import torch
import variants  # benchmarks/variants.py, likewise
from torch import nn

from companion import benchmark, contention, models, timing, timing_file
from companion.book import load_script

ROOT = Path(__file__).resolve().parents[1]
STORED_CPU = [ROOT / "book" / "data" / f"11_bench_cpu_t{n}.json" for n in (1, 2)]
STORED_12 = [ROOT / "book" / "data" / f"12_{name}_cpu.json" for name in ("speed", "generation")]

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
    # this machine may be busy: the layout is checked here, the conditions below
    results = benchmark.load_results(out, refuse=False)
    assert results["schema"] == benchmark.SCHEMA_VERSION == 3 and results["layout"] == "bench"
    device = results["device"]
    assert device["type"] == "cpu" and device["name"] and device["torch"] == torch.__version__
    assert device["threads"] == 1 and device["cpu_count"] >= 1 and device["affinity"]
    c = results["contention"]
    assert len(c["load_before"]) == len(c["load_after"]) == 3
    assert len(c["cores"]) == device["cpu_count"] and 0 < c["own_cpu_s"] and 0 < c["wall_s"]
    assert 0 < c["cpu_share"] <= 1.01 and c["others_cores"] >= 0
    assert results["settings"]["repeats"] == 5 and results["settings"]["compile"]
    assert results["conditions"] == benchmark.check_conditions(results)
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
        assert len(r["times_ms"]) == len(r["cpu_ms"]) == 5
        assert 0 < r["min_ms"] <= r["q1_ms"] <= r["median_ms"] <= r["q3_ms"] <= r["max_ms"]
        assert all(cpu <= wall * 1.002 for cpu, wall in zip(r["cpu_ms"], r["times_ms"]))
        # every variant computes torch.nn's function from torch.nn's weights
        assert r["max_abs_diff"] < 1e-5, r
    header = csv_path.read_text().splitlines()[0]
    assert header.startswith("device,device_name,torch,threads,section")


def test_ratios_are_to_torch_nn_at_the_same_shape(tiny_results):
    results = benchmark.load_results(tiny_results[0], refuse=False)
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
    results = benchmark.load_results(tiny_results[0], refuse=False)
    assert all(r["precision"] == "float32" for r in results["forward_backward"])
    pairs = bench.pairs(torch.device("cuda"), ["torch.nn", "companion+cudagraphs"])
    assert ("companion+cudagraphs", "float32") in pairs and ("torch.nn", "bf16-autocast") in pairs
    assert bench.pairs(torch.device("cpu"), ["torch.nn", "companion+cudagraphs"]) == [
        ("torch.nn", "float32")
    ]
    with pytest.raises(RuntimeError, match="CUDA"):
        variants.build_layer("companion+cudagraphs", "LSTM", nn.LSTM(3, 4), torch.randn(2, 1, 3))


def test_compiled_layer_recompiles_at_every_new_length_and_the_fused_one_never(tiny_results):
    results = benchmark.load_results(tiny_results[0], refuse=False)
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
    for cls in (variants.NaiveLayer, variants.BareLayer):
        out, state = cls(kind, reference)(x)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    out, state = variants.NaiveLayer(kind, reference)(x)
    if kind == "LSTM":
        torch.testing.assert_close(state[1], expected_state[1], rtol=1e-5, atol=1e-6)
    folded = models.GATE_BLOCKS[kind.lower()] * 5 if kind != "GRU" else 2 * 5
    assert (
        sum(p.numel() for p in variants.NaiveLayer(kind, reference).parameters())
        == sum(p.numel() for p in reference.parameters()) - folded
    )


def test_a_probe_reports_graphs_only_for_a_compiled_variant():
    probe = {
        "kind": "LSTM",
        "lengths": [100, 200],
        "graphs_compiled": [0, 0],
        "recompilations": 0,
        "first_call_s": [0.01, 0.01],
        "second_call_ms": [9.0, 18.0],
    }
    fused = bench.probe_line({**probe, "variant": "companion+fused"})
    assert "graphs" not in fused and "not compiled" in fused and "[9.0, 18.0] ms" in fused
    compiled = bench.probe_line(
        {**probe, "variant": "companion+compile", "graphs_compiled": [1, 1]}
    )
    assert "graphs compiled [1, 1], recompilations 0" in compiled


def test_bare_layer_says_which_recording_it_leaves_out():
    doc = " ".join(variants.BareLayer.__doc__.split())
    assert "no gate recording" in doc and "no recording" not in doc
    assert "Autograd still builds its graph" in doc


def test_time_interleaved_rotates_the_order():
    calls = []
    runners = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = bench.time_interleaved(runners, repeats=3, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert calls[:3] == ["a", "b", "c"] and calls[3:6] == ["b", "c", "a"]


def test_out_paths_name_the_thread_count(tmp_path):
    cpu = torch.device("cpu")
    assert bench.out_path(None, cpu, 2, True, "full").name == "11_bench_cpu_t2.json"
    assert bench.out_path(None, cpu, 1, False, "full").name == "11_bench_cpu_t1.json"
    assert bench.out_path(None, cpu, 1, False, "quick") is None
    assert bench.out_path(str(tmp_path / "r.json"), cpu, 2, True, "quick").name == "r_t2.json"
    assert bench.out_path(str(tmp_path / "r.json"), cpu, 2, False, "quick").name == "r.json"


def _row(variant, length, median, spread=0.05, kind="LSTM", batch=8, hidden=256, share=0.99):
    """A forward+backward row whose five repeats spread by ``spread`` around ``median`` ms."""
    walls = [median * (1 + spread * k) / 1e3 for k in (-1, -0.5, 0, 0.5, 1)]
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
        **benchmark.summarize(walls, [w * share for w in walls]),
    }


def _finish(results, load=(0.3, 0.2, 0.1), others=0.02):
    """Complete a synthetic file as a 10 s run on cores 0 and 1 would, with ``others`` cores of
    CPU used by other processes, and store its derived fields."""
    own = 9.0
    results["contention"] = {
        "wall_s": 10.0,
        "own_cpu_s": own,
        "cores": {
            "0": {"busy_s": own, "steal_s": 0.0, "idle_s": 10.0 - own},
            "1": {"busy_s": 10 * others, "steal_s": 0.0, "idle_s": 10 - 10 * others},
        },
        "load_before": list(load),
        "load_after": list(load),
    }
    results["contention"].update(timing_file._contention_summaries(results))
    if results["layout"] == "bench":
        bench.add_ratios(
            results["forward_backward"],
            ("group", "kind", "batch", "length", "input_size", "hidden_size"),
        )
        results["goals"] = benchmark.goals_section(results)
    benchmark.validate_results(results)
    return results


def _synthetic(device_type, ms_of_batch, batches=(1, 8, 64, 256), load=(0.3, 0.2, 0.1)):
    rows = [
        _row(v, 50, ms_of_batch(b) * (1 if v == "torch.nn" else 1.5), batch=b)
        for v in ("torch.nn", "companion")
        for b in batches
    ]
    results = benchmark.new_results(
        "bench", {}, {"type": device_type, "name": f"synthetic {device_type}", "threads": 1}
    )
    results["device"].update(cpu_count=2, affinity=[0, 1])
    results["forward_backward"] = rows
    return _finish(results, load)


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


def test_conditions_refuse_load_in_any_window_and_other_processes():
    assert benchmark.check_conditions(_synthetic("cpu", float)) == []
    # quiet in the last minute, busy in the quarter of an hour before: refused, by how much
    busy = _synthetic("cpu", float, load=(1.15, 5.05, 13.07))
    problems = benchmark.check_conditions(busy)
    assert any(
        "over 15 min 13.07 before the run, above 2 (2 cores) by 11.07" in p for p in problems
    )
    assert any("over 5 min 5.05 after" in p for p in problems)
    # another process held one of the two cores throughout: the load may look fine, the
    # per-core CPU time does not
    shared = _finish(copy.deepcopy(busy), load=(1.0, 1.0, 1.0), others=1.0)
    (problem,) = benchmark.check_conditions(shared)
    assert "other processes used 1.00 cores" in problem and "by 0.85" in problem
    # a run with more threads than the cores it may use competes with itself
    crowded = copy.deepcopy(_synthetic("cpu", float))
    crowded["device"]["threads"] = 3
    assert "3 threads on 2 allowed core(s)" in benchmark.check_conditions(crowded)[0]


def test_conditions_refuse_a_preempted_row_and_run():
    results = _synthetic("cpu", float)
    results["forward_backward"][3] = _row("torch.nn", 50, 256.0, batch=256, share=0.7)
    results = _finish(results)
    problems = benchmark.check_conditions(results)
    assert any("row LSTM torch.nn grid N=256" in p and "ran 70%" in p for p in problems)
    # a limit is a limit: the same row passes a looser one
    assert benchmark.check_conditions(results, benchmark.Limits(min_cpu_share=0.6)) == []
    everything = _synthetic("cpu", float)
    everything["forward_backward"] = [
        _row(r["variant"], 50, r["median_ms"], batch=r["batch"], share=0.5)
        for r in everything["forward_backward"]
    ]
    problems = benchmark.check_conditions(_finish(everything))
    assert "the run: its timing thread ran 50%" in problems[0] and "short by 40%" in problems[0]


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [("batch", 48, "N=48"), ("length", 100, "L=100"), ("hidden", 512, "H=512")],
)
def test_conditions_refuse_more_work_that_ran_faster_in_every_size(field, value, where):
    results = _synthetic("cpu", float)
    # the first benchmark's nn.LSTM at N=64, H=256: 602 ms at L=50, 399 ms at L=100
    small = dict(length=50, batch=32, hidden=256)
    results["forward_backward"] += [
        _row("torch.nn", median=602.0, kind="GRU", **small),
        _row("torch.nn", median=399.0, kind="GRU", **{**small, field: value}),
    ]
    (problem,) = benchmark.check_conditions(_finish(results))
    assert where in problem and "took 399.0 ms" in problem and "fastest run (571.9 ms)" in problem
    # within the spread it is noise, not a contradiction
    results["forward_backward"][-1]["median_ms"] = 590.0
    assert timing_file._monotone_problems(results) == []


def test_batch_must_grow_the_total_time_not_the_time_per_sequence():
    """A larger batch may cost more per sequence (oneDNN's LSTM does, from N=64 to N=256, in
    the stored grid); only a batch whose total time fell is more work that ran faster."""
    results = _synthetic("cpu", float)
    results["forward_backward"] += [
        _row("torch.nn", 50, median=200.0, kind="GRU", batch=64),
        _row("torch.nn", 50, median=900.0, kind="GRU", batch=256),  # dearer per sequence: fine
        _row("torch.nn", 100, median=300.0, kind="GRU", batch=64),
        _row("torch.nn", 100, median=1000.0, kind="GRU", batch=256),  # cheaper per sequence
    ]
    assert timing_file._monotone_problems(results) == []
    # less total time for 4x the sequences: more work that ran faster
    results["forward_backward"][-3] = _row("torch.nn", 50, median=150.0, kind="GRU", batch=256)
    (problem,) = timing_file._monotone_problems(results)
    assert "N=256 L=50" in problem and "less than batch=64's fastest run" in problem


def test_outliers_are_reported_not_refused():
    results = _synthetic("cpu", float)
    row = results["forward_backward"][0]
    walls = [t / 1e3 for t in row["times_ms"]] + [0.011]  # 11 ms in a row of ~1 ms
    results["forward_backward"][0] = {**row, **benchmark.summarize(walls, walls)}
    results = _finish(results)
    (line,) = benchmark.outliers(results)
    assert "N=1" in line and "far out: [11.0]" in line
    assert benchmark.check_conditions(results) == []


def test_verdicts_need_interquartile_ranges_that_do_not_overlap():
    fast, slow = [1.0, 1.1, 1.2, 1.3, 1.4], [2.0, 2.1, 2.2, 2.3, 2.4]
    assert benchmark.verdict(fast, slow) == "faster"
    assert benchmark.verdict(slow, fast) == "slower"
    assert benchmark.verdict(fast, [1.25, 1.3, 1.35, 1.4, 1.5]) == "too close to call"
    # goals bound the ratio a/b, whose range from the IQRs is [1.1/2.3, 1.3/2.1]
    assert benchmark.verdict(fast, slow, goal=0.62) == "met"
    assert benchmark.verdict(fast, slow, goal=0.47) == "missed"
    assert benchmark.verdict(fast, slow, goal=0.55) == "too close to call"
    # the range that decides a goal's verdict
    low, high = benchmark.ratio_range(fast, slow)
    assert (low, high) == pytest.approx((1.1 / 2.3, 1.3 / 2.1))
    # stored rows work alike, and the goal report carries the verdict
    rows = _synthetic("cpu", float)["forward_backward"]
    assert benchmark.verdict(rows[0], rows[1]) == "faster"
    with pytest.raises(ValueError, match="at least one sample"):
        benchmark.spread([])


def test_load_results_rejects_a_wrong_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"schema": benchmark.SCHEMA_VERSION, "device": {}}))
    with pytest.raises(ValueError, match="missing"):
        benchmark.load_results(path)
    good = _synthetic("cpu", float)
    old = copy.deepcopy(good)
    old["schema"] = 2
    with pytest.raises(ValueError, match="expected schema 3, got 2 .measure again"):
        benchmark.validate_results(old)
    bad = copy.deepcopy(good)
    del bad["forward_backward"][0]["cpu_ms"]
    with pytest.raises(ValueError, match="expected forward_backward row 0 .*cpu_ms, it is missing"):
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
    _tables_and_plots(benchmark.load_results(tiny_results[0], refuse=False))


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
    assert benchmark.load_results(out, refuse=False)["settings"]["preset"] == "tiny"


REMEASURE = "measure them again on a quiet machine: sh benchmarks/remeasure.sh"


def _accepted(path):
    """The stored file, loaded (accepted) by the one loader; a clear failure if it is not."""
    assert path.exists(), f"{path.name} is missing: {REMEASURE}"
    try:
        return benchmark.load_results(path)
    except ValueError as err:
        refusal = f"{err}\n{REMEASURE}"
    pytest.fail(refusal, pytrace=False)


@pytest.mark.parametrize("path", STORED_CPU, ids=lambda p: p.name)
def test_the_stored_cpu_results_were_measured_under_fair_conditions(path):
    results = _accepted(path)
    assert results["layout"] == "bench" and results["device"]["type"] == "cpu"
    assert results["device"]["threads"] == int(path.stem[-1])
    assert results["settings"]["preset"] == "full", "store the full preset, not --quick"
    assert results["conditions"] == benchmark.check_conditions(results) == []
    report = _tables_and_plots(results)
    # the file chapter 11 reads has every CPU goal's ratio, so the chapter can report on them
    assert all(g["ratio"] is not None and g["verdict"] for g in report)
    probes = {(p["kind"], p["variant"]) for p in results["recompilation"]}
    assert probes >= {("LSTM", "companion+fused"), ("GRU", "companion+fused")}


@pytest.mark.parametrize("path", STORED_CPU, ids=lambda p: p.name)
def test_goal_report_gives_the_range_its_verdict_is_decided_on(path):
    results = benchmark.load_results(path)
    KEYS = ("variant", "baseline")
    for goal in benchmark.goal_report(results):
        shape = benchmark.Shape.of(goal)
        a, b = (benchmark.find_row(results, goal["kind"], goal[k], shape) for k in KEYS)
        assert goal["ratio_low"] == a["q1_ms"] / b["q3_ms"]
        assert goal["ratio_high"] == a["q3_ms"] / b["q1_ms"]
        # the ratio of medians lies in the range (to its 3 stored digits)
        assert (
            goal["ratio_low"] <= goal["ratio"] + 5e-4 and goal["ratio"] <= goal["ratio_high"] + 5e-4
        )
        expected = (
            "met"
            if goal["ratio_high"] <= goal["max_ratio"]
            else "missed"
            if goal["ratio_low"] > goal["max_ratio"]
            else "too close to call"
        )
        assert goal["verdict"] == expected
    # the file keeps its goals section as it was: the range follows from the stored quartiles
    assert results["goals"] == benchmark.goals_section(results)
    assert not any("ratio_low" in g or "ratio_high" in g for g in results["goals"])


@pytest.mark.parametrize("path", STORED_12, ids=lambda p: p.name)
def test_chapter_12s_stored_timings_were_measured_under_fair_conditions(path):
    results = _accepted(path)
    layout = path.stem.split("_")[1]  # speed or generation
    assert results["layout"] == layout and results["device"]["threads"] == 1
    assert results["conditions"] == benchmark.check_conditions(results) == []
    script = "speed_sweep" if layout == "speed" else "lm_sweep"
    module = load_script(script, f"scripts/12_{script}.py", ROOT / "book")
    if layout == "speed":  # every point of the chapter's table, every model
        points = {(b, n) for b in module.BATCHES for n in module.LENGTHS}
        points |= {(b, module.BATCH_SWEEP_LENGTH) for b in module.BATCH_SWEEP}
        expected = {(m, b, n) for m in module.MODELS for b, n in points}
        assert {(r["model"], r["batch"], r["length"]) for r in results["rows"]} == expected
    else:
        expected = {(m, n) for m in module.GENERATION_MODELS for n in module.GENERATION_CONTEXTS}
        assert {(r["model"], r["context"]) for r in results["rows"]} == expected


def test_chapter_12_scripts_write_files_the_loader_reads():
    speed = load_script("speed_sweep", "scripts/12_speed_sweep.py", ROOT / "book")
    lm = load_script("lm_sweep", "scripts/12_lm_sweep.py", ROOT / "book")
    for results in (speed.sweep((8, 16), (1,), (), rounds=3), lm.measure_generation(3, (8, 16), 2)):
        benchmark.validate_results(json.loads(json.dumps(results)))
        assert results["conditions"] == benchmark.check_conditions(results)
        assert all(len(r["times_ms"]) == len(r["cpu_ms"]) == 3 for r in results["rows"])
    assert {r["model"] for r in results["rows"]} == set(lm.GENERATION_MODELS)


# ------------------------------------------------------------------------------------------------
# Attacks on the loader: forged files and a run that shares its core
# ------------------------------------------------------------------------------------------------


def _attack(tiny_results, edit):
    results = benchmark.load_results(tiny_results[0], refuse=False)
    edit(results)
    return results


def test_an_edited_median_is_refused(tiny_results):
    def halve(results):
        results["forward_backward"][2]["median_ms"] /= 2

    with pytest.raises(ValueError, match=r"row 2 .*stored median_ms .* but its 5 samples give"):
        benchmark.validate_results(_attack(tiny_results, halve))

    def halve_the_samples_too(results):  # consistent summaries: then the CPU times exceed the wall
        row = results["forward_backward"][2]
        row.update(times_ms=[t / 2 for t in row["times_ms"]])
        row.update(timing.summaries(row["times_ms"], row["cpu_ms"]))

    with pytest.raises(ValueError, match="exceeds its wall time"):
        benchmark.validate_results(_attack(tiny_results, halve_the_samples_too))


def test_a_forged_core_count_is_refused(tiny_results):
    def more_cores(results):
        results["device"]["cpu_count"] = 16

    with pytest.raises(ValueError, match="cpu_count says 16 cores, but the file's per-core"):
        benchmark.validate_results(_attack(tiny_results, more_cores))

    def idle_cores(results):  # and per-core data made up to match: they must add up
        cores = results["contention"]["cores"]
        cores.update({str(k): {"busy_s": 0.0, "steal_s": 0.0, "idle_s": 0.0} for k in range(16)})
        results["device"]["cpu_count"] = len(cores)

    with pytest.raises(ValueError, match="accounts for 0.00 s of a"):
        benchmark.validate_results(_attack(tiny_results, idle_cores))

    def other_summary(results):  # a summary that says otherwise than the raw per-core data
        results["contention"]["others_cores"] += 0.5

    with pytest.raises(ValueError, match="contention.others_cores .*, but the file's raw"):
        benchmark.validate_results(_attack(tiny_results, other_summary))


@pytest.mark.parametrize("load", [None, [None, 0.1, 0.1], [0.1, 0.1]])
def test_null_loads_are_refused(tiny_results, load):
    def unknown(results):
        results["contention"]["load_before"] = load

    with pytest.raises(ValueError, match="load_before"):
        benchmark.validate_results(_attack(tiny_results, unknown))
    results = _attack(tiny_results, lambda r: r["contention"].update(others_cores=None))
    with pytest.raises(ValueError, match="contention.others_cores is null: .* a refusal"):
        benchmark.validate_results(results)


def _busy_fraction(core: int, seconds: float = 0.5) -> float:
    """How busy ``core`` was over the next ``seconds`` (all processes), from /proc/stat."""
    before = contention.proc_stat()[str(core)]
    time.sleep(seconds)
    after = contention.proc_stat()[str(core)]
    busy, steal, idle = (a - b for a, b in zip(after, before))
    return (busy + steal) / max(busy + steal + idle, 1)


def _pinned_tiny_run(core: int, out: Path) -> None:
    done = subprocess.run(
        ["taskset", "-c", str(core), sys.executable, str(ROOT / "benchmarks" / "bench.py")]
        + ["--tiny", "--device", "cpu", "--threads", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr


needs_taskset = pytest.mark.skipif(
    shutil.which("taskset") is None or contention.proc_stat() is None,
    reason="needs taskset (util-linux) and /proc/stat",
)


@needs_taskset
def test_a_run_sharing_its_core_with_a_busy_loop_is_refused(tmp_path):
    core = max(os.sched_getaffinity(0))
    busy = subprocess.Popen(["taskset", "-c", str(core), sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # the loop is running before the run starts
        _pinned_tiny_run(core, tmp_path / "shared.json")
    finally:
        busy.kill()
        busy.wait()
    results = benchmark.load_results(tmp_path / "shared.json", refuse=False)
    assert results["device"]["affinity"] == [core]
    with pytest.raises(benchmark.RefusedResults) as refused:
        benchmark.load_results(tmp_path / "shared.json")
    message = str(refused.value)
    assert "other processes used" in message and f"(on cores [{core}])" in message
    assert "the run: its timing thread ran" in message


@needs_taskset
def test_the_same_run_alone_on_a_core_is_accepted(tmp_path):
    cores = sorted(os.sched_getaffinity(0))
    busy = {core: _busy_fraction(core) for core in cores}
    core = min(busy, key=busy.get)
    load = os.getloadavg()
    if busy[core] > 0.05 or max(load) > len(cores):
        pytest.skip(
            f"no quiet core to test on: core {core} was {busy[core]:.0%} busy, load averages "
            f"{load} (this test needs the machine to itself, as CI gives it)"
        )
    _pinned_tiny_run(core, tmp_path / "alone.json")
    results = benchmark.load_results(tmp_path / "alone.json")  # accepted: nothing raised
    assert results["device"]["affinity"] == [core] and results["conditions"] == []
