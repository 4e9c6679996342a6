"""Tests for companion.diagnostics: gradient-norm curves, spectral radius, decay rate, gate
stats."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from companion.diagnostics import (
    decay_rate,
    gate_statistics,
    hidden_grad_norms,
    scale_to_spectral_radius,
    spectral_radius,
)

H, I, N = 8, 3, 4


def orthogonal_times(rho: float, size: int = H, seed: int = 0) -> torch.Tensor:
    """rho · Q with Q orthogonal: every singular value and every |eigenvalue| equals rho."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(size, size, generator=g, dtype=torch.float64))
    return q * rho


def linear_rnn(weight_hh: torch.Tensor) -> nn.RNNCell:
    """A tanh RNN cell without biases in float64; with zero input and h0 = 0 it stays at h = 0,
    where tanh' = 1, so backpropagation through it is exactly multiplication by W_hh^T."""
    torch.manual_seed(0)
    cell = nn.RNNCell(I, weight_hh.shape[0], bias=False).double()
    with torch.no_grad():
        cell.weight_hh.copy_(weight_hh)
    return cell


# --- hidden_grad_norms -------------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.5, 0.9, 1.5])
def test_linear_rnn_orthogonal_curve_is_exactly_geometric(rho: float) -> None:
    L = 30
    cell = linear_rnn(orthogonal_times(rho))
    norms = hidden_grad_norms(cell, torch.zeros(L, N, I, dtype=torch.float64))
    # ∂L/∂h_t = (ρQ^T)^(T-t) 1 and Q preserves norms: ‖∂L/∂h_t‖ = ρ^(T-t) √H.
    expected = torch.tensor(
        [rho ** (L - 1 - t) * math.sqrt(H) for t in range(L)], dtype=torch.float64
    )
    torch.testing.assert_close(norms, expected, rtol=1e-10, atol=0)
    assert decay_rate(norms) == pytest.approx(rho, rel=1e-10)
    ratios = norms[:-1] / norms[1:]
    torch.testing.assert_close(ratios, torch.full_like(ratios, rho), rtol=1e-10, atol=0)


def test_contractive_rnn_vanishes_towards_the_past() -> None:
    cell = linear_rnn(orthogonal_times(0.5))
    norms = hidden_grad_norms(cell, 1e-6 * torch.randn(20, N, I, dtype=torch.float64))
    assert torch.all(norms[1:] > norms[:-1])  # the curve increases with t
    assert norms[0] / norms[-1] < 1e-5
    assert decay_rate(norms) == pytest.approx(0.5, rel=1e-4)


def test_expansive_rnn_explodes_towards_the_past() -> None:
    cell = linear_rnn(orthogonal_times(1.5))
    # Tiny inputs keep h tiny for 16 steps (1.5^16 · 1e-8 ≪ 1): the linear regime holds.
    norms = hidden_grad_norms(cell, 1e-8 * torch.randn(16, N, I, dtype=torch.float64))
    assert torch.all(norms[1:] < norms[:-1])  # the curve decreases with t
    assert norms[0] / norms[-1] > 1e2
    assert decay_rate(norms) == pytest.approx(1.5, rel=1e-4)


def test_symmetric_weight_rate_tends_to_spectral_radius() -> None:
    rho, L = 0.8, 60
    q = orthogonal_times(1.0, seed=3)
    eigenvalues = torch.tensor(
        [rho, -0.5 * rho, 0.4 * rho, 0.3 * rho, -0.2 * rho, 0.1 * rho, 0.05, 0.0],
        dtype=torch.float64,
    )
    W = q @ torch.diag(eigenvalues) @ q.T
    assert spectral_radius(W) == pytest.approx(rho)
    norms = hidden_grad_norms(linear_rnn(W), torch.zeros(L, N, I, dtype=torch.float64))
    # Far from the end only the top eigenvector survives: ratio → ρ at rate (0.5)^d.
    ratios = norms[:20] / norms[1:21]
    torch.testing.assert_close(ratios, torch.full_like(ratios, rho), rtol=1e-6, atol=0)
    assert decay_rate(norms, stop=L - 30) == pytest.approx(rho, rel=1e-6)


def test_lstm_with_open_forget_gate_keeps_the_gradient() -> None:
    torch.manual_seed(0)
    L = 40
    lstm = nn.LSTMCell(I, H)
    rnn = nn.RNNCell(I, H)
    with torch.no_grad():
        lstm.bias_ih.zero_()
        lstm.bias_hh.zero_()
        lstm.bias_ih[H : 2 * H] = 5.0  # f = σ(5) ≈ 0.993: the cell state is carried almost intact
        rnn.weight_hh.copy_(scale_to_spectral_radius(rnn.weight_hh, 0.5))
    x = torch.randn(L, N, I)
    lstm_norms = hidden_grad_norms(lstm, x)
    rnn_norms = hidden_grad_norms(rnn, x)
    # The last step has no recurrence behind it: fit the rate on t < T.
    assert decay_rate(lstm_norms, stop=-1) > 0.95
    assert decay_rate(rnn_norms, stop=-1) < 0.6
    assert lstm_norms[0] / lstm_norms[-2] > 1e-2
    assert rnn_norms[0] / rnn_norms[-2] < 1e-8


def test_shape_dtype_device_and_no_side_effects() -> None:
    torch.manual_seed(0)
    cell = nn.GRUCell(I, H)
    x = torch.randn(7, N, I)
    with torch.no_grad():  # the function turns grad on itself
        norms = hidden_grad_norms(cell, x)
    assert norms.shape == (7,)
    assert norms.dtype == torch.float32
    assert norms.device.type == "cpu"
    assert not norms.requires_grad
    assert norms[-1].item() == pytest.approx(math.sqrt(H))  # ∂(Σ h_T)/∂h_T = 1
    assert all(p.grad is None for p in cell.parameters())
    assert not x.requires_grad


def test_frozen_parameters_still_give_a_curve() -> None:
    cell = linear_rnn(orthogonal_times(0.5)).requires_grad_(False)
    norms = hidden_grad_norms(cell, torch.zeros(5, N, I, dtype=torch.float64))
    assert decay_rate(norms) == pytest.approx(0.5)


def test_unbatched_input_matches_batch_of_one() -> None:
    torch.manual_seed(0)
    cell = nn.LSTMCell(I, H)
    x = torch.randn(6, I)
    torch.testing.assert_close(hidden_grad_norms(cell, x), hidden_grad_norms(cell, x[:, None]))


def test_h0_and_callable_loss() -> None:
    torch.manual_seed(0)
    cell = nn.LSTMCell(I, H)
    x = torch.randn(5, N, I)
    h0 = (torch.randn(N, H), torch.randn(N, H))
    norms = hidden_grad_norms(cell, x, h0=h0, loss=lambda h: 3.0 * h.sum())
    assert norms[-1].item() == pytest.approx(3.0 * math.sqrt(H))
    assert not torch.equal(norms, hidden_grad_norms(cell, x, loss=lambda h: 3.0 * h.sum()))
    # Only one unit of one sample in the loss: ∂L/∂h_T is one-hot in one row.
    norms = hidden_grad_norms(cell, x, loss=lambda h: h[0, 0])
    assert norms[-1].item() == pytest.approx(1.0 / N)


def test_batch_mean_of_per_sample_norms() -> None:
    cell = linear_rnn(orthogonal_times(0.5))
    x = torch.zeros(4, 2, I, dtype=torch.float64)
    # Sample 0 weighted 1, sample 1 weighted 3: per-sample norms √H and 3√H, mean 2√H.
    norms = hidden_grad_norms(cell, x, loss=lambda h: h[0].sum() + 3 * h[1].sum())
    assert norms[-1].item() == pytest.approx(2 * math.sqrt(H))


def test_hidden_grad_norms_bad_input() -> None:
    cell = nn.RNNCell(I, H)
    with pytest.raises(
        ValueError,
        match=r"expected x with 3 dimensions \(L, N, I\) or 2 \(L, I\), got shape \(4,\)",
    ):
        hidden_grad_norms(cell, torch.zeros(4))
    with pytest.raises(ValueError, match="at least one time step"):
        hidden_grad_norms(cell, torch.zeros(0, N, I))
    with pytest.raises(TypeError, match="floating-point"):
        hidden_grad_norms(cell, torch.zeros(3, N, I, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        hidden_grad_norms(cell, np.zeros((3, N, I)))
    with pytest.raises(ValueError, match="loss='last' or a callable"):
        hidden_grad_norms(cell, torch.zeros(3, N, I), loss="mean")
    with pytest.raises(ValueError, match="scalar tensor, got"):
        hidden_grad_norms(cell, torch.zeros(3, N, I), loss=lambda h: h)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_the_device_of_x() -> None:
    torch.manual_seed(0)
    cell = nn.LSTMCell(I, H)
    x = torch.randn(6, N, I)
    expected = hidden_grad_norms(cell, x)
    got = hidden_grad_norms(cell.cuda(), x.cuda())
    assert got.device.type == "cpu"
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell", "GRUCell"])
def test_companion_cells_give_the_same_curve(kind: str) -> None:
    models = pytest.importorskip("companion.models")
    torch.manual_seed(0)
    reference = getattr(nn, kind)(I, H)
    twin = getattr(models, kind)(I, H)
    twin.load_state_dict(reference.state_dict())
    x = torch.randn(8, N, I)
    torch.testing.assert_close(
        hidden_grad_norms(twin, x), hidden_grad_norms(reference, x), rtol=1e-4, atol=1e-7
    )


# --- spectral_radius / scale_to_spectral_radius ------------------------------------------


def test_spectral_radius_known_matrices() -> None:
    assert spectral_radius(torch.diag(torch.tensor([0.3, -2.0, 1.0]))) == pytest.approx(2.0)
    angle = 0.7
    rotation = 1.3 * torch.tensor(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    )
    assert spectral_radius(rotation) == pytest.approx(
        1.3, rel=1e-6
    )  # complex eigenvalues 1.3 e^{±iθ}
    assert spectral_radius(np.array([[0.0, 1.0], [0.0, 0.0]])) == 0.0  # nilpotent
    assert spectral_radius(nn.RNNCell(2, 5).weight_hh) > 0  # a Parameter works


def test_scale_to_spectral_radius_tensor() -> None:
    torch.manual_seed(0)
    W = nn.Parameter(torch.randn(6, 6))
    before = W.detach().clone()
    scaled = scale_to_spectral_radius(W, 0.5)
    assert isinstance(scaled, torch.Tensor) and not isinstance(scaled, nn.Parameter)
    assert not scaled.requires_grad
    assert scaled.dtype == W.dtype and scaled.shape == W.shape
    assert spectral_radius(scaled) == pytest.approx(0.5, rel=1e-5)
    assert torch.equal(W.detach(), before)  # a copy, the original untouched
    assert spectral_radius(scale_to_spectral_radius(W, 0)) == 0.0


def test_scale_to_spectral_radius_numpy() -> None:
    W = np.random.default_rng(0).standard_normal((5, 5)).astype(np.float32)
    scaled = scale_to_spectral_radius(W, 1.5)
    assert isinstance(scaled, np.ndarray) and scaled.dtype == np.float32
    assert spectral_radius(scaled) == pytest.approx(1.5, rel=1e-5)


def test_spectral_radius_errors() -> None:
    with pytest.raises(
        ValueError, match=r"square matrix \(H, H\), got shape \(32, 8\).*weight_hh\[:8\]"
    ):
        spectral_radius(torch.zeros(32, 8))
    with pytest.raises(ValueError, match=r"square matrix \(H, H\), got shape \(3,\)"):
        spectral_radius(torch.zeros(3))
    with pytest.raises(TypeError, match="torch.Tensor or numpy.ndarray, got list"):
        spectral_radius([[1.0]])
    with pytest.raises(ValueError, match="radius 0"):
        scale_to_spectral_radius(torch.zeros(3, 3), 0.9)
    with pytest.raises(ValueError, match="expected rho to be a finite number >= 0, got -1.0"):
        scale_to_spectral_radius(torch.eye(3), -1.0)
    with pytest.raises(ValueError, match="square"):
        scale_to_spectral_radius(np.zeros((2, 3)), 1.0)


# --- decay_rate ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    rate=st.floats(0.2, 3.0),
    scale=st.floats(1e-3, 1e3),
    length=st.integers(2, 60),
)
def test_decay_rate_recovers_geometric_factor(rate: float, scale: float, length: int) -> None:
    norms = [scale * rate ** (length - 1 - t) for t in range(length)]
    assert decay_rate(norms) == pytest.approx(rate, rel=1e-9)
    assert decay_rate(np.array(norms)) == pytest.approx(rate, rel=1e-9)
    assert decay_rate(torch.tensor(norms, dtype=torch.float64)) == pytest.approx(rate, rel=1e-9)


def test_decay_rate_sign_convention_and_range() -> None:
    L = 10
    vanishing = torch.tensor([0.5 ** (L - 1 - t) for t in range(L)])
    assert decay_rate(vanishing) == pytest.approx(0.5, rel=1e-5)  # < 1: vanishing going back
    assert decay_rate(vanishing.flip(0)) == pytest.approx(2.0, rel=1e-5)  # > 1: exploding
    # A curve that bends: only the selected range is fitted.
    bent = np.concatenate([[0.1 ** (4 - t) for t in range(5)], [0.9 ** (4 - t) for t in range(5)]])
    assert decay_rate(bent, start=5) == pytest.approx(0.9)
    assert decay_rate(bent, stop=5) == pytest.approx(0.1)
    assert decay_rate(np.append(bent, 0.0), start=5, stop=-1) == pytest.approx(0.9)  # zero left out


def test_decay_rate_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 points"):
        decay_rate([1.0])
    with pytest.raises(ValueError, match="at least 2 points"):
        decay_rate([1.0, 2.0, 3.0], start=2)
    with pytest.raises(ValueError, match=r"1-D curve \(L,\), got shape \(2, 2\)"):
        decay_rate(np.ones((2, 2)))
    with pytest.raises(ValueError, match="finite norms > 0, got 0.0 at t=1"):
        decay_rate([1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="at t=2"):
        decay_rate([1.0, 1.0, float("nan")])


# --- gate_statistics ----------------------------------------------------------------------


def test_gate_statistics_hand_made_values() -> None:
    gates = {
        "f": torch.tensor([[0.05, 0.95], [0.5, 0.5]]),  # (L=2, H=2)
        "g": torch.tensor([[-0.95, 0.0], [0.95, 0.5]]),  # tanh gate: saturated at |v| > 0.9
        "c": torch.tensor([[5.0, -7.0], [0.0, 1.0]]),  # a state: skipped
        "h": torch.zeros(2, 2),
    }
    stats = gate_statistics(gates)
    assert set(stats) == {"f", "g"}
    f = stats["f"]
    assert f["mean"] == pytest.approx(0.5)
    assert f["std"] == pytest.approx(math.sqrt((0.45**2 * 2) / 4))
    assert f["saturated_low"] == pytest.approx(0.25)
    assert f["saturated_high"] == pytest.approx(0.25)
    assert f["saturated"] == pytest.approx(0.5)
    g = stats["g"]
    assert g["saturated_low"] == pytest.approx(0.25)
    assert g["saturated_high"] == pytest.approx(0.25)
    assert g["mean"] == pytest.approx(0.125)
    assert all(isinstance(v, float) for v in f.values())


def test_gate_statistics_masks() -> None:
    # (L=3, N=2, H=1): step 2 of sequence 1 is padding holding a saturated value.
    i = torch.tensor([[[0.5], [0.5]], [[0.5], [0.5]], [[0.5], [0.99]]])
    step_mask = torch.tensor([True, True, False])
    assert gate_statistics({"i": i}, step_mask)["i"]["saturated"] == 0.0
    pad_mask = torch.tensor([[True, True], [True, True], [True, False]])
    stats = gate_statistics({"i": i}, pad_mask)["i"]
    assert stats["mean"] == pytest.approx(0.5) and stats["std"] == pytest.approx(0.0)
    assert gate_statistics({"i": i})["i"]["saturated_high"] == pytest.approx(1 / 6)
    # Leading (layers × directions) dims are pooled and the mask broadcasts over them.
    stacked = torch.stack([i, 1 - i])  # (2, L, N, H)
    stats = gate_statistics({"i": stacked}, pad_mask)["i"]
    assert stats["mean"] == pytest.approx(0.5)
    assert stats["saturated"] == 0.0


def test_gate_statistics_on_a_recorded_lstm() -> None:
    torch.manual_seed(0)
    cell = nn.LSTMCell(I, H)
    with torch.no_grad():
        cell.bias_ih.zero_()
        cell.bias_hh.zero_()
        cell.bias_ih[H : 2 * H] = 6.0
    x = torch.randn(10, N, I)
    # Recompute the gates from the cell's own weights, as record_gates would store them.
    h, c = torch.zeros(N, H), torch.zeros(N, H)
    fs = []
    with torch.no_grad():
        for t in range(10):
            pre = x[t] @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
            fs.append(torch.sigmoid(pre[:, H : 2 * H]))
            h, c = cell(x[t], (h, c))
    stats = gate_statistics({"f": torch.stack(fs)})
    assert stats["f"]["mean"] > 0.95
    assert stats["f"]["saturated_high"] > 0.9


def test_gate_statistics_errors() -> None:
    with pytest.raises(ValueError, match="non-empty dict"):
        gate_statistics({})
    with pytest.raises(
        ValueError, match=r"shape \(L, H\), \(L, N, H\) or \(..., L, N, H\), got shape \(5,\)"
    ):
        gate_statistics({"f": torch.rand(5)})
    with pytest.raises(
        ValueError,
        match=r"mask of shape \(L,\) = \(3,\) or \(L, N\) = \(3, 2\) for gate 'f' of shape "
        r"\(3, 2, 5\), got \(4,\)",
    ):
        gate_statistics({"f": torch.rand(3, 2, 5)}, torch.ones(4, dtype=torch.bool))
    with pytest.raises(
        ValueError,
        match=r"mask of shape \(L,\) = \(3,\) for gate 'f' of shape \(3, 5\), got \(3, 2\)",
    ):
        gate_statistics({"f": torch.rand(3, 5)}, torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="boolean mask"):
        gate_statistics({"f": torch.rand(3, 5)}, torch.ones(3))
    with pytest.raises(ValueError, match="selects no values"):
        gate_statistics({"f": torch.rand(3, 5)}, torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"σ gate 'i' to lie in \[0, 1\]"):
        gate_statistics({"i": torch.tensor([[1.5]])})
    with pytest.raises(ValueError, match=r"tanh gate 'n' to lie in \[-1, 1\]"):
        gate_statistics({"n": torch.tensor([[-2.0]])})
    with pytest.raises(TypeError, match=r"pass one layer's record, e.g. rec\[''\]"):
        gate_statistics({"": {"f": torch.rand(3, 2, 5)}})


def test_hidden_grad_norms_does_not_underflow_for_tiny_gradients():
    """Gradients of 1e-23 per entry square to below float32's range; the norm must not read 0."""
    cell = torch.nn.RNNCell(1, 32, bias=False)
    with torch.no_grad():
        cell.weight_ih.fill_(1e-3)
        cell.weight_hh.zero_()
    x = torch.ones(2, 1, 1)
    tiny = 1e-23
    norms = hidden_grad_norms(cell, x, loss=lambda h: tiny * h.sum())
    # d(loss)/d(h_1) = tiny * ones(32): norm tiny * sqrt(32); d/d(h_0) = 0 through W_hh = 0.
    assert norms.dtype == torch.float32
    assert norms[1].item() == pytest.approx(tiny * 32**0.5, rel=1e-5)
    assert norms[0].item() == 0.0
