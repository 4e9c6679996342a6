"""companion.init: each long-memory initialisation gives the values and the random draws that
the sweep scripts' own copies gave (the stored sweeps and the chapters' live re-runs rely on
both), on torch.nn's layers and on companion's twins alike."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from companion import models as cm
from companion.init import (
    chrono_biases,
    chrono_init,
    identity_init,
    orthogonal_recurrence,
    set_gate_bias,
)

H, T_MAX = 6, 50


def seeded(layer_class, *args, seed=0, **kwargs):
    torch.manual_seed(seed)
    return layer_class(*args, **kwargs)


def assert_same(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


# The scripts' copies as they were before companion.init (book/scripts/06_memory_sweep.py and
# 09_char_models.py), kept here as the reference the new functions must reproduce draw for draw.
def chrono_06(lstm, t_max):
    with torch.no_grad():
        for k in range(lstm.num_layers):
            b_f = torch.empty(H).uniform_(1, max(t_max - 1, 2)).log()
            b_ih, b_hh = getattr(lstm, f"bias_ih_l{k}"), getattr(lstm, f"bias_hh_l{k}")
            b_ih[:H], b_ih[H : 2 * H] = -b_f, b_f
            b_hh[: 2 * H] = 0.0


def update_gate_06(gru, t_max):
    with torch.no_grad():
        for k in range(gru.num_layers):
            getattr(gru, f"bias_ih_l{k}")[H : 2 * H] = chrono_biases(H, t_max)
            getattr(gru, f"bias_hh_l{k}")[H : 2 * H] = 0.0


def orthogonal_09(rnn):
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            if name.startswith("weight_hh"):
                nn.init.orthogonal_(p)


@pytest.mark.parametrize("layer_class", [nn.LSTM, cm.LSTM])
def test_chrono_init_draws_as_the_adding_sweep_did(layer_class) -> None:
    new, old = seeded(layer_class, 2, H, 3), seeded(layer_class, 2, H, 3)
    torch.manual_seed(1)
    chrono_init(new, T_MAX)
    torch.manual_seed(1)
    chrono_06(old, T_MAX)
    assert_same(new, old)
    b_f = new.bias_ih_l2[H : 2 * H]
    assert torch.equal(new.bias_ih_l2[:H], -b_f)  # b_i = -b_f
    assert bool((b_f >= 0).all()) and bool((b_f <= torch.log(torch.tensor(T_MAX - 1.0))).all())


@pytest.mark.parametrize("layer_class", [nn.GRU, cm.GRU])
def test_chrono_init_of_a_gru_is_the_update_gate_form(layer_class) -> None:
    new, old = seeded(layer_class, 2, H, 2), seeded(layer_class, 2, H, 2)
    torch.manual_seed(1)
    chrono_init(new, T_MAX)
    torch.manual_seed(1)
    update_gate_06(old, T_MAX)
    assert_same(new, old)


@pytest.mark.parametrize(
    ("layer_class", "keep"),
    [(cm.MinGRU, lambda b: torch.sigmoid(-b[:H])), (cm.MinLSTM, lambda b: torch.sigmoid(b[:H]))],
    ids=["MinGRU", "MinLSTM"],
)
def test_chrono_init_of_the_minimal_layers_keeps_for_1_to_t_max_steps(layer_class, keep) -> None:
    layer = chrono_init(seeded(layer_class, 2, H, 2), T_MAX)
    for k in range(2):
        b = getattr(layer, f"bias_l{k}")
        kept = keep(b)  # the share of the old state kept per step, u / (1 + u) with u in [1, 49]
        assert bool((kept >= 0.5 - 1e-6).all()) and bool((kept <= 49 / 50 + 1e-6).all())
        if layer_class is cm.MinLSTM:
            assert torch.equal(b[H : 2 * H], -b[:H])  # b_i = -b_f
    assert not torch.equal(layer.bias_l0[:H], layer.bias_l1[:H])  # one draw per layer


def test_chrono_init_refuses_a_layer_without_a_memory_gate() -> None:
    with pytest.raises(
        TypeError, match="chrono_init: expected one of LSTM, GRU, MinGRU, MinLSTM, got RNN"
    ):
        chrono_init(nn.RNN(2, H), T_MAX)


def test_chrono_init_reaches_the_reverse_direction() -> None:
    lstm = chrono_init(seeded(nn.LSTM, 2, H, bidirectional=True), T_MAX)
    assert bool((lstm.bias_hh_l0_reverse[: 2 * H] == 0).all())
    assert not torch.equal(lstm.bias_ih_l0[H : 2 * H], lstm.bias_ih_l0_reverse[H : 2 * H])


@pytest.mark.parametrize(
    ("layer", "gate", "rows"),
    [
        (nn.LSTM(2, H, 2, bidirectional=True), "f", slice(H, 2 * H)),
        (cm.GRU(2, H, 2), "z", slice(H, 2 * H)),
        (cm.MinGRU(2, H, 2), "z", slice(0, H)),
        (cm.MinLSTM(2, H, 2), "i", slice(H, 2 * H)),
        (cm.SLSTM(2, H, 2), "f", slice(H, 2 * H)),
        (nn.LSTMCell(2, H), "o", slice(3 * H, 4 * H)),
    ],
    ids=["LSTM", "GRU", "MinGRU", "MinLSTM", "SLSTM", "LSTMCell"],
)
def test_set_gate_bias_puts_the_whole_bias_in_one_place(layer, gate, rows) -> None:
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    set_gate_bias(layer, gate, 1.5)
    changed = set()
    for name, p in layer.named_parameters():
        last = name.rsplit(".", 1)[-1]
        if last.startswith("bias"):
            want = 0.0 if last.startswith("bias_hh") else 1.5
            assert bool((p[rows] == want).all()), name
            outside = torch.ones(p.shape[0], dtype=torch.bool)
            outside[rows] = False
            assert torch.equal(p[outside], before[name][outside]), name
            changed.add(name)
        else:
            assert torch.equal(p, before[name]), name
    assert changed, "no bias was found"


def test_set_gate_bias_refuses_what_has_no_such_gate() -> None:
    with pytest.raises(TypeError, match=r"set_gate_bias: expected a gated layer .* got RNN"):
        set_gate_bias(nn.RNN(2, H), "f", 1.0)
    with pytest.raises(ValueError, match=r"expected a gate of GRU in \('r', 'z', 'n'\), got 'f'"):
        set_gate_bias(nn.GRU(2, H), "f", 1.0)
    with pytest.raises(TypeError, match=r"expected value to be a finite number, got str '1'"):
        set_gate_bias(nn.GRU(2, H), "z", "1")


@pytest.mark.parametrize("layer_class", [nn.RNN, cm.RNN])
def test_identity_init_is_the_irnn(layer_class) -> None:
    rnn = identity_init(seeded(layer_class, 2, H, 2, nonlinearity="relu", bidirectional=True))
    for name, p in rnn.named_parameters():
        if name.startswith("weight_hh"):
            assert torch.equal(p, torch.eye(H)), name
        elif name.startswith("bias"):
            assert not bool(p.any()), name
    assert rnn.weight_ih_l0.abs().sum() > 0  # the input weights keep their draw


def test_orthogonal_recurrence_draws_as_the_char_models_did() -> None:
    new, old = seeded(nn.RNN, 3, H, 2), seeded(nn.RNN, 3, H, 2)
    torch.manual_seed(1)
    orthogonal_recurrence(new)
    torch.manual_seed(1)
    orthogonal_09(old)
    assert_same(new, old)
    w = new.weight_hh_l1.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(H))
