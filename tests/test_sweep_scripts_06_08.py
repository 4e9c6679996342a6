"""The sweep scripts of chapters 6 and 8: matched sizes and the initialisations they compare.

The scripts' file names start with a digit, so they are loaded from their paths. Nothing here
trains a model; the sweeps themselves are run by hand and their results stored in book/data.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "book" / "scripts"


def load(name: str, file: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


memory_sweep = load("memory_sweep", "06_memory_sweep.py")
mul_sweep = load("mul_sweep", "06_multiplication_sweep.py")
distance_sweep = load("distance_sweep", "08_distance_sweep.py")


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("init", memory_sweep.INITS)
def test_chapter_6_networks_have_matched_sizes(init: str) -> None:
    sizes = [count(memory_sweep.make_model(c, init, t_max=100)) for c in memory_sweep.CELLS]
    assert max(sizes) < 1.02 * min(sizes), sizes
    # ... and the same width would not be: the matching is what makes them equal
    same_width = [count(memory_sweep.make_model(c, init, 100, hidden=30)) for c in ("RNN", "LSTM")]
    assert same_width[1] > 3 * same_width[0]


def test_chapter_8_recurrent_layers_have_matched_sizes() -> None:
    sizes = [
        count(distance_sweep.make_classifier(c, "memory", vocab_size=68).rnn)
        for c in distance_sweep.CELLS
    ]
    assert max(sizes) < 1.02 * min(sizes), sizes


def test_default_init_keeps_pytorch_and_memory_init_sets_the_gates() -> None:
    torch.manual_seed(0)
    lstm = memory_sweep.make_model("LSTM", "memory", t_max=100).rnn
    H = lstm.hidden_size
    b_f = lstm.bias_ih_l1[H : 2 * H] + lstm.bias_hh_l1[H : 2 * H]
    b_i = lstm.bias_ih_l1[:H] + lstm.bias_hh_l1[:H]
    assert torch.allclose(b_i, -b_f)  # chrono: b_i = -b_f
    assert b_f.min() >= 0 and b_f.max() <= torch.log(torch.tensor(99.0)) + 1e-6
    assert b_f.std() > 0.5  # one bias per unit, spread out

    gru = memory_sweep.make_model("GRU", "memory", t_max=100).rnn
    b_z = gru.bias_ih_l0[gru.hidden_size : 2 * gru.hidden_size]
    assert (b_z >= 0).all() and b_z.std() > 0.5

    irnn = memory_sweep.make_model("RNN", "memory", t_max=100).rnn
    assert irnn.nonlinearity == "relu"
    assert torch.equal(irnn.weight_hh_l1, torch.eye(irnn.hidden_size))
    assert irnn.bias_hh_l0.abs().sum() == 0

    rnn = memory_sweep.make_model("RNN", "default", t_max=100).rnn
    assert rnn.nonlinearity == "tanh" and not torch.equal(rnn.weight_hh_l0, torch.eye(61))


def test_chapter_8_memory_biases_and_identity() -> None:
    lstm = distance_sweep.make_classifier("LSTM", "memory", vocab_size=68).rnn
    H = lstm.hidden_size
    assert torch.all(lstm.bias_ih_l0[H : 2 * H] == distance_sweep.MEMORY_BIAS)
    assert torch.all(lstm.bias_hh_l0[H : 2 * H] == 0)
    default = distance_sweep.make_classifier("LSTM", "default", vocab_size=68).rnn
    assert default.bias_ih_l0[H : 2 * H].abs().max() < 1  # PyTorch's uniform init
    irnn = distance_sweep.make_classifier("RNN", "memory", vocab_size=68).rnn
    assert irnn.nonlinearity == "relu" and torch.equal(irnn.weight_hh_l0, torch.eye(72))


@pytest.mark.parametrize("cell, gate", [("LSTM", 1), ("GRU", 1)])  # rows i f g o; r z n
def test_chapter_8_memory_gate_opens_in_both_directions(cell: str, gate: int) -> None:
    rnn = distance_sweep.make_classifier(cell, "memory", vocab_size=68, bidirectional=True).rnn
    H = rnn.hidden_size
    for suffix in ("_l0", "_l0_reverse"):
        b_ih, b_hh = getattr(rnn, "bias_ih" + suffix), getattr(rnn, "bias_hh" + suffix)
        assert torch.all(b_ih[gate * H : (gate + 1) * H] == distance_sweep.MEMORY_BIAS)
        assert torch.all(b_hh[gate * H : (gate + 1) * H] == 0)
        assert b_ih[:H].abs().max() < 1  # the other gates keep PyTorch's start
    irnn = distance_sweep.make_classifier("RNN", "memory", vocab_size=68, bidirectional=True).rnn
    assert torch.equal(irnn.weight_hh_l0_reverse, torch.eye(72))


def test_unknown_init_is_refused() -> None:
    with pytest.raises(ValueError, match="expected init in"):
        memory_sweep.make_model("LSTM", "orthogonal", t_max=10)
    with pytest.raises(ValueError, match="expected init in"):
        distance_sweep.make_classifier("GRU", "chrono", vocab_size=10)


def test_multiplication_split_is_disjoint_and_sized_as_the_classic_setting() -> None:
    train, val, test = mul_sweep.split_data()
    assert [len(x) for x, _ in (train, val, test)] == [2000, 500, 500]
    assert train[0].shape[1] == 100
    u, m = train[0][..., 0], train[0][..., 1]
    assert torch.allclose(train[1].squeeze(1), torch.where(m.bool(), u, 1.0).prod(1))
    keys = {tuple(x.flatten().tolist()) for x in train[0]}
    assert not any(tuple(x.flatten().tolist()) in keys for x in test[0])
