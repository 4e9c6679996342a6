"""The import rules of docs/ARCHITECTURE.md, enforced: each module imports only what its row of
the map allows, no import cycle (function-level imports included), numpy_lstm reaches no torch,
and every layer (the twins, chapter 12's, fused) checks its input and state on one path."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from companion import fused
from companion import models as cm

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "companion"

#: module -> the companion modules it may import ("__init__" is the package itself). Keep in
#: step with the table in docs/ARCHITECTURE.md.
ALLOWED: dict[str, set[str]] = {
    "_checks": set(),
    "_autocast": set(),
    "download": set(),
    "book": set(),
    "numpy_lstm": {"_checks"},
    "device": {"_checks"},
    "_layer": {"_checks", "_autocast"},
    "minrnn": {"_checks", "_layer"},
    "slstm": {"_checks", "_layer"},
    "gates": set(),
    "gate_recording": set(),
    "parameters": {"gates"},
    "models": {
        "_checks",
        "_autocast",
        "_layer",
        "gates",
        "gate_recording",
        "parameters",
        "minrnn",
        "slstm",
    },
    "fused": {"_layer", "models"},
    "init": {"_checks", "models"},
    "char_lm": {"_checks", "minrnn"},
    "safe_globals": {"models", "fused"},
    "__init__": {"device", "safe_globals"},
    "data": {"_checks", "download"},
    "plots": {"_checks", "gates"},
    "history": {"_checks", "plots"},
    "checkpoints": {"__init__", "device", "history"},
    "distributed": {"_checks", "checkpoints", "device"},
    "batches": {"_checks"},
    "train": {"_autocast", "_checks", "batches", "checkpoints", "device", "distributed", "history"},
    "sweep": {"_checks"},
    "diagnostics": {"_checks", "gates"},
    "timing": set(),
    "contention": set(),
    "speed_goals": {"timing"},
    "timing_file": {"contention", "speed_goals", "timing"},
    "benchmark": {"contention", "plots", "speed_goals", "timing", "timing_file"},
    "selection": {"history", "sweep", "train"},
    "paired": set(),
    "ngram": set(),
    "weight_drop": set(),
}


def companion_imports(path: Path) -> set[str]:
    """The companion modules ``path`` imports anywhere in it, by short name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "companion":  # from companion import x: a module, or __version__
                names = [f"companion.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name == "companion" or name == "companion.__version__":
                found.add("__init__")
            elif name.startswith("companion."):
                found.add(name.split(".")[1])
    return found


def all_imports(path: Path) -> set[str]:
    """Every top-level module name ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
    return found


GRAPH = {p.stem: companion_imports(p) for p in PACKAGE.glob("*.py")}


def test_every_module_has_a_row_in_the_map() -> None:
    assert set(GRAPH) == set(ALLOWED)
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    missing = [m for m in GRAPH if f"`{m}`" not in text and m != "__init__"]
    assert not missing, f"docs/ARCHITECTURE.md does not name {missing}"


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_each_module_imports_only_what_the_map_allows(module: str) -> None:
    extra = GRAPH[module] - ALLOWED[module]
    assert not extra, f"companion/{module}.py imports {sorted(extra)}, which the map forbids"


def test_no_import_cycle() -> None:
    state: dict[str, str] = {}  # "open" while on the path, "done" once finished

    def visit(module: str, path: list[str]) -> None:
        if state.get(module) == "done":
            return
        if state.get(module) == "open":
            cycle = path[path.index(module) :] + [module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        state[module] = "open"
        for dep in sorted(GRAPH.get(module, ())):
            visit(dep, path + [module])
        state[module] = "done"

    for module in sorted(GRAPH):
        visit(module, [])


def test_numpy_lstm_reaches_no_torch() -> None:
    reached, todo = set(), ["numpy_lstm"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(GRAPH[module])
    torch_users = [m for m in reached if "torch" in all_imports(PACKAGE / f"{m}.py")]
    assert not torch_users, f"numpy_lstm reaches torch through {torch_users}"


@pytest.mark.parametrize("module", ["gates", "timing", "contention"])
def test_the_plain_python_modules_import_no_torch(module: str) -> None:
    """The map calls them plain Python: a gate table, a clock and /proc/stat need no torch."""
    assert "torch" not in all_imports(PACKAGE / f"{module}.py")


@pytest.mark.parametrize("module", ["models", "minrnn", "slstm", "fused"])
def test_every_layer_module_checks_on_the_shared_path(module: str) -> None:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    taken = {
        a.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "companion._layer"
        for a in node.names
    }
    assert {"time_major", "check_states"} <= taken
    own = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.ClassDef))
        and node.name.lstrip("_") in {"time_major", "check_states", "check_input", "ShapeError"}
    }
    assert not own, f"{module} defines its own {own}"


LAYERS = {
    "RNN": lambda: cm.RNN(3, 4, num_layers=2),
    "LSTM": lambda: cm.LSTM(3, 4, num_layers=2),
    "GRU": lambda: cm.GRU(3, 4, num_layers=2),
    "MinGRU": lambda: cm.MinGRU(3, 4, num_layers=2),
    "MinLSTM": lambda: cm.MinLSTM(3, 4, num_layers=2),
    "SLSTM": lambda: cm.SLSTM(3, 4, num_layers=2),
    "FusedLayer": lambda: fused.fuse(cm.LSTM(3, 4, num_layers=2)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_one_mistake_one_error_in_every_layer(name: str) -> None:
    layer = LAYERS[name]()
    for bad, message in [
        (torch.randn(5, 2, 6), rf"{name}: expected input with input_size=3 features"),
        (torch.randn(0, 2, 3), rf"{name}: expected a sequence length of at least 1"),
        (torch.randn(5, 2, 3, 1), rf"{name}: expected input with 3 dimensions"),
    ]:
        with pytest.raises(cm.ShapeError, match=message):
            layer(bad)
    with pytest.raises(TypeError, match=rf"{name}: expected input to be a Tensor"):
        layer([[0.0, 1.0, 2.0]])
    with pytest.raises(cm.ShapeError, match=rf"{name}: expected h_?0? of shape \(2, 2, 4\)"):
        h = torch.zeros(1, 2, 4)
        count = {"LSTM": 2, "FusedLayer": 2, "SLSTM": 4}.get(name, 1)
        layer(torch.randn(5, 2, 3), h if count == 1 else (h,) * count)
