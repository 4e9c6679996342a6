"""companion.weight_drop: DropConnect on an LSTM's recurrent weights (AWD-LSTM's weight drop)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from companion.weight_drop import WeightDropLSTM


def make(p: float = 0.5, **kwargs) -> WeightDropLSTM:
    torch.manual_seed(0)
    return WeightDropLSTM(3, 5, 2, weight_dropout=p, batch_first=True, **kwargs)


def test_eval_mode_is_plain_lstm() -> None:
    layer = make().eval()
    plain = nn.LSTM(3, 5, 2, batch_first=True)
    plain.load_state_dict(layer.lstm.state_dict())
    x = torch.randn(4, 7, 3)
    out, (h, c) = layer(x)
    want, (h_want, c_want) = plain(x)
    assert torch.equal(out, want) and torch.equal(h, h_want) and torch.equal(c, c_want)


def test_training_mode_drops_recurrent_weights_only() -> None:
    layer = make(p=0.5).train()
    x = torch.randn(4, 7, 3)
    out, _ = layer(x)
    # one mask per call: two calls differ, the shapes are nn.LSTM's
    again, _ = layer(x)
    assert out.shape == (4, 7, 5) and not torch.allclose(out, again)
    # the first step reads h_0 = 0, so W_hh (and its mask) cannot change it
    with torch.no_grad():
        reference, _ = layer.lstm(x[:, :1])
    assert torch.allclose(out[:, 0], reference[:, 0], atol=1e-6)
    # the stored weights are untouched, and they receive a gradient
    before = layer.lstm.weight_hh_l0.detach().clone()
    out.sum().backward()
    assert torch.equal(layer.lstm.weight_hh_l0.detach(), before)
    assert layer.lstm.weight_hh_l0.grad is not None
    assert layer.lstm.weight_hh_l0.grad.abs().sum() > 0


def test_dropped_weights_have_zeros_in_the_gradient() -> None:
    # an entry dropped for this call gets no gradient from it; with p = 0.9 most are dropped
    layer = make(p=0.9).train()
    out, _ = layer(torch.randn(4, 7, 3))
    out.sum().backward()
    zeros = (layer.lstm.weight_hh_l0.grad == 0).float().mean().item()
    assert zeros > 0.5


def test_zero_rate_is_plain_lstm_in_training() -> None:
    layer = make(p=0.0).train()
    x = torch.randn(2, 4, 3)
    assert torch.equal(layer(x)[0], layer.lstm(x)[0])


@pytest.mark.parametrize("p", [-0.1, 1.0, "0.5"])
def test_bad_rate_is_refused(p) -> None:
    with pytest.raises(ValueError, match="expected weight_dropout in"):
        WeightDropLSTM(3, 5, weight_dropout=p)
