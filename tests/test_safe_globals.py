"""companion's layers load with torch.load(weights_only=True) after ``import companion``: a whole
model saved with torch.save, read back in a fresh process, as a user's training script does."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import companion
from companion import safe_globals

ROOT = Path(__file__).resolve().parents[1]

# Each layer inside a user's model (a class of the test script, like a user's own model would
# be, allowed by the user as torch.nn's classes are).
BUILD = {
    "RNNCell": "m.RNNCell(3, 4)",
    "LSTMCell": "m.LSTMCell(3, 4)",
    "GRUCell": "m.GRUCell(3, 4)",
    "RNN": "m.RNN(3, 4, num_layers=2, nonlinearity='relu', dropout=0.1)",
    "LSTM": "m.LSTM(3, 4, batch_first=True, bidirectional=True)",
    "GRU": "m.GRU(3, 4)",
    "MinGRU": "m.MinGRU(3, 4, num_layers=2)",
    "MinLSTM": "m.MinLSTM(3, 4, mode='sequential')",
    "SLSTMCell": "m.SLSTMCell(3, 4)",
    "SLSTM": "m.SLSTM(3, 4, num_layers=2)",
    "FusedLayer": "fuse(m.LSTM(3, 4))",
}

SAVE = """
import sys, torch
import companion.models as m
from companion.fused import fuse

class Model(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer, self.head = layer, torch.nn.Linear(4, 1)

for name, build in {builds}.items():
    torch.manual_seed(0)
    torch.save(Model(eval(build)), f"{{sys.argv[1]}}/{{name}}.pt")
"""

LOAD = """
import sys, torch
import companion  # registers companion's classes

class Model(torch.nn.Module):
    pass

allowed = [Model, torch.nn.Linear, torch.nn.ModuleList]
for name in {names}:
    with torch.serialization.safe_globals(allowed):
        model = torch.load(f"{{sys.argv[1]}}/{{name}}.pt", weights_only=True)
    state = {{k: v.sum().item() for k, v in model.state_dict().items()}}
    print(name, type(model.layer).__module__, type(model.layer).__name__, sorted(state.items()))
"""


def run(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


needs_allowlist = pytest.mark.skipif(
    not hasattr(torch.serialization, "safe_globals"), reason="torch < 2.5 has no safe_globals"
)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> dict[str, tuple[str, str, list]]:
    """Every layer of BUILD saved whole by one process and loaded weights-only by a fresh one:
    name -> (module, class, sorted parameter sums)."""
    folder = tmp_path_factory.mktemp("models")
    saved = run(SAVE.format(builds=BUILD), str(folder))
    assert saved.returncode == 0, saved.stderr
    done = run(LOAD.format(names=list(BUILD)), str(folder))
    assert done.returncode == 0, done.stderr
    found = {}
    for line in done.stdout.splitlines():
        name, module, cls, state = line.split(" ", 3)
        found[name] = (module, cls, eval(state))
    return found


@needs_allowlist
@pytest.mark.parametrize("name", BUILD)
def test_whole_model_round_trips_weights_only(name, loaded):
    module, cls, state = loaded[name]
    homes = ("companion.models", "companion.fused", "companion.minrnn", "companion.slstm")
    assert module in homes and cls == name
    # the same parameters as a model built in this process with the same seed
    torch.manual_seed(0)
    namespace: dict = {}
    exec("import companion.models as m\nfrom companion.fused import fuse", namespace)
    layer = eval(BUILD[name], namespace)
    want = {f"layer.{k}": v.sum().item() for k, v in layer.state_dict().items()}
    assert {k: v for k, v in state if k.startswith("layer.")} == want


@needs_allowlist
def test_without_companion_the_load_is_refused(tmp_path):
    """The test can fail: without the registration, torch refuses companion's class."""
    path = tmp_path / "LSTM.pt"
    assert run(SAVE.format(builds={"LSTM": BUILD["LSTM"]}), str(tmp_path)).returncode == 0
    refused = run(
        "import sys, torch\n"
        "class Model(torch.nn.Module): pass\n"
        "with torch.serialization.safe_globals([Model, torch.nn.Linear]):\n"
        "    torch.load(sys.argv[1], weights_only=True)\n",
        str(path),
    )
    assert refused.returncode != 0
    assert "companion.models.LSTM" in refused.stderr


def test_every_layer_class_is_registered():
    assert companion.safe_globals is safe_globals
    exported = {
        cls
        for module in (companion.models, companion.minrnn, companion.slstm, companion.fused)
        for cls in vars(module).values()
        if isinstance(cls, type)
        and issubclass(cls, torch.nn.Module)
        and not cls.__name__.startswith("_")
        and cls.__module__ == module.__name__
    }
    assert exported == set(safe_globals.SAFE_CLASSES)
    if hasattr(torch.serialization, "get_safe_globals"):
        registered = torch.serialization.get_safe_globals()
        assert set(safe_globals.SAFE_CLASSES) <= set(registered)
        # and under the paths where chapter 12's classes lived before their own modules
        assert set(safe_globals.FORMER_PATHS.items()) <= set(registered)
