"""companion.fused: the hand-written Functions compute torch.nn's function and gradients, pass
autograd's gradcheck, refuse what they do not support, and compile nothing."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import companion.models as cm
from companion import fused
from companion.models import ShapeError

CASES = [
    ("LSTM", {}),
    ("GRU", {}),
    ("RNN", {}),
    ("RNN", {"nonlinearity": "relu"}),
    ("LSTM", {"num_layers": 2, "bias": False}),
    ("GRU", {"num_layers": 2, "batch_first": True}),
    ("LSTM", {"batch_first": True}),
    ("GRU", {"bias": False}),
]


def _states(kind, layers, batch, hidden, generator):
    def draw():
        return torch.randn(
            layers, batch, hidden, dtype=torch.float64, generator=generator, requires_grad=True
        )

    return (draw(), draw()) if kind == "LSTM" else draw()


def _loss(output, state):
    states = state if isinstance(state, tuple) else (state,)
    weights = torch.linspace(-1, 1, output.numel(), dtype=output.dtype).view(output.shape)
    return (output * weights).sum() + sum((s**3).sum() for s in states)


@pytest.mark.parametrize("kind, kwargs", CASES, ids=[f"{k}-{kw}" for k, kw in CASES])
@pytest.mark.parametrize("source", ["torch.nn", "companion"])
def test_fused_matches_torch_nn_in_values_and_gradients(kind, kwargs, source):
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    reference = getattr(nn, kind)(5, 7, **kwargs).double()
    layer = reference if source == "torch.nn" else getattr(cm, kind)(5, 7, **kwargs).double()
    layer.load_state_dict(reference.state_dict())
    fast = fused.fuse(layer)
    x = torch.randn(9, 4, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    hx = _states(kind, reference.num_layers, 9 if reference.batch_first else 4, 7, generator)
    inputs = [x, *(hx if isinstance(hx, tuple) else (hx,))]
    out_ref, state_ref = reference(x, hx)
    out, state = fast(x, hx)
    torch.testing.assert_close(out, out_ref)
    for got, expected in zip(
        state if isinstance(state, tuple) else (state,),
        state_ref if isinstance(state_ref, tuple) else (state_ref,),
    ):
        torch.testing.assert_close(got, expected)
    grads_ref = torch.autograd.grad(
        _loss(out_ref, state_ref), inputs + list(reference.parameters())
    )
    grads = torch.autograd.grad(_loss(out, state), inputs + list(layer.parameters()))
    for got, expected in zip(grads, grads_ref):
        torch.testing.assert_close(got, expected)


def test_unbatched_input_and_default_state():
    reference = nn.GRU(3, 4)
    fast = fused.fuse(reference)
    x = torch.randn(6, 3)
    out, h = fast(x)
    expected, expected_h = reference(x)
    assert out.shape == (6, 4) and h.shape == (1, 4)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(h, expected_h)


@pytest.mark.parametrize(
    "function, states", [(fused.lstm_sequence, 2), (fused.gru_sequence, 1), (fused.rnn_sequence, 1)]
)
def test_hand_written_backward_passes_gradcheck(function, states):
    gates = {fused.lstm_sequence: 4, fused.gru_sequence: 3, fused.rnn_sequence: 1}[function]
    generator = torch.Generator().manual_seed(1)

    def draw(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=generator, requires_grad=True)

    hidden = 3
    args = [
        draw(4, 2, 3),
        draw(gates * hidden, 3),
        draw(gates * hidden, hidden),
        draw(gates * hidden),
        draw(gates * hidden),
    ]
    args += [draw(2, hidden) for _ in range(states)]
    assert torch.autograd.gradcheck(function, args)


def test_training_the_fused_wrapper_trains_the_layer():
    layer = cm.LSTM(3, 4)
    fast = fused.fuse(layer)
    before = layer.weight_hh_l0.detach().clone()
    optimizer = torch.optim.SGD(fast.parameters(), lr=0.1)
    fast(torch.randn(5, 2, 3))[0].sum().backward()
    optimizer.step()
    assert not torch.equal(before, layer.weight_hh_l0)
    assert {name for name, _ in fast.named_parameters()} == {
        f"layer.{name}" for name, _ in layer.named_parameters()
    }


def test_an_output_changed_in_place_is_caught_before_a_wrong_backward():
    fast = fused.fuse(nn.LSTM(3, 4))
    out, _ = fast(torch.randn(5, 2, 3))
    out.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_unsupported_layers_and_inputs_are_refused_clearly():
    with pytest.raises(ValueError, match="bidirectional=True"):
        fused.fuse(nn.LSTM(3, 4, bidirectional=True))
    with pytest.raises(ValueError, match="proj_size=2"):
        fused.fuse(nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(TypeError, match="expected an RNN, LSTM or GRU layer"):
        fused.fuse(nn.Linear(3, 4))
    fast = fused.fuse(nn.GRU(3, 4, num_layers=2, dropout=0.5))
    with pytest.raises(ValueError, match="dropout=0.5"):
        fast(torch.randn(5, 2, 3))
    fast.eval()
    assert fast(torch.randn(5, 2, 3))[0].shape == (5, 2, 4)
    # The same checks, and errors, as the twins: ShapeError for shapes, an empty sequence too.
    with pytest.raises(ShapeError, match=r"FusedLayer: expected input with input_size=3 features"):
        fast(torch.randn(5, 2, 6))
    with pytest.raises(ShapeError, match=r"FusedLayer: expected h_0 of shape \(2, 2, 4\)"):
        fast(torch.randn(5, 2, 3), torch.zeros(1, 2, 4))
    with pytest.raises(ShapeError, match=r"FusedLayer: expected a sequence length of at least 1"):
        fast(torch.randn(0, 2, 3))
    packed = pack_padded_sequence(torch.randn(5, 2, 3), [5, 3])
    with pytest.raises(TypeError, match="packed sequences"):
        fast(packed)


def test_nothing_is_compiled_at_any_sequence_length():
    from torch._dynamo.utils import counters

    fast = fused.fuse(nn.LSTM(3, 4))
    before = counters["stats"]["unique_graphs"]
    for length in (50, 100, 200):
        fast(torch.randn(length, 2, 3))[0].sum().backward()
    assert counters["stats"]["unique_graphs"] == before
