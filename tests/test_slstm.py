"""companion.slstm: the sLSTM of chapter 12, its stabiliser, and its layer."""

from __future__ import annotations

import math

import pytest
import torch

from companion import models as m

# ------------------------------------------------------------------------------------------------
# sLSTM
# ------------------------------------------------------------------------------------------------


def run_cell(cell, xs, state=None):
    hs = []
    for x in xs:
        state = cell(x, state)
        hs.append(state[0])
    return torch.stack(hs), state


def test_slstm_stabilised_equals_unstabilised_where_finite():
    torch.manual_seed(4)
    stable = m.SLSTMCell(3, 6, dtype=torch.float64)
    plain = m.SLSTMCell(3, 6, stabilised=False, dtype=torch.float64)
    plain.load_state_dict(stable.state_dict())
    xs = 2 * torch.randn(40, 5, 3, dtype=torch.float64)
    h_s, (_, c_s, n_s, m_s) = run_cell(stable, xs)
    h_p, (_, c_p, n_p, _) = run_cell(plain, xs)
    assert bool(torch.isfinite(h_p).all())
    torch.testing.assert_close(h_s, h_p, rtol=1e-10, atol=1e-12)
    # the stabilised c and n are the plain ones scaled by exp(-m)
    torch.testing.assert_close(c_s, c_p * torch.exp(-m_s))
    torch.testing.assert_close(n_s, n_p * torch.exp(-m_s))
    assert bool((m_s != 0).any())  # the stabiliser did move


def test_slstm_unstabilised_overflows_where_stabilised_is_finite():
    torch.manual_seed(5)
    stable = m.SLSTMCell(2, 4)
    plain = m.SLSTMCell(2, 4, stabilised=False)
    with torch.no_grad():
        stable.bias[:4] = 100.0  # input-gate pre-activation ~100: exp(100) > float32 max
    plain.load_state_dict(stable.state_dict())
    xs = torch.randn(10, 3, 2)
    h_s, _ = run_cell(stable, xs)
    h_p, _ = run_cell(plain, xs)
    assert bool(torch.isfinite(h_s).all())
    assert not bool(torch.isfinite(h_p).all())
    # and in float64, where exp(100) is representable, the plain form gives the same h
    stable64 = m.SLSTMCell(2, 4, dtype=torch.float64)
    stable64.load_state_dict({k: v.double() for k, v in stable.state_dict().items()})
    plain64 = m.SLSTMCell(2, 4, stabilised=False, dtype=torch.float64)
    plain64.load_state_dict(stable64.state_dict())
    h64_s, _ = run_cell(stable64, xs.double())
    h64_p, _ = run_cell(plain64, xs.double())
    torch.testing.assert_close(h64_s, h64_p)
    torch.testing.assert_close(h_s.double(), h64_s, rtol=1e-4, atol=1e-5)


def test_slstm_layer_equals_cells_and_batch_first():
    torch.manual_seed(6)
    layer = m.SLSTM(3, 4, num_layers=2, batch_first=True)
    x = torch.randn(2, 7, 3)
    out, (h_n, c_n, n_n, m_n) = layer(x)
    xs = x.transpose(0, 1)
    h1, s1 = run_cell(layer.cells[0], xs)
    h2, s2 = run_cell(layer.cells[1], h1)
    torch.testing.assert_close(out, h2.transpose(0, 1))
    torch.testing.assert_close(h_n, torch.stack([s1[0], s2[0]]))
    torch.testing.assert_close(m_n, torch.stack([s1[3], s2[3]]))
    # carrying the state over two halves gives the whole
    first, state = layer(x[:, :3])
    second, _ = layer(x[:, 3:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), out)


def test_slstm_exponential_gate_can_exceed_one():
    """Unlike σ, the unstabilised input gate exp(ĩ) is not bounded by 1."""
    cell = m.SLSTMCell(1, 2, stabilised=False)
    with torch.no_grad():
        cell.bias[:2] = 2.0
        cell.weight_ih.zero_()
    _, gates = m.slstm_step(
        torch.nn.functional.linear(torch.zeros(1, 1), cell.weight_ih, cell.bias),
        tuple(torch.zeros(1, 2) for _ in range(4)),
        cell.weight_hh.t(),
        stabilised=False,
    )
    assert abs(gates[0][0, 0].item() - math.exp(2.0)) < 1e-4


def test_slstm_bad_input_errors():
    cell = m.SLSTMCell(3, 4)
    with pytest.raises(ValueError, match="input_size=3 features"):
        cell(torch.randn(2, 5))
    with pytest.raises(TypeError, match=r"tuple \(h, c, n, m\), got tuple of length 2"):
        cell(torch.randn(2, 3), (torch.zeros(2, 4), torch.zeros(2, 4)))
    with pytest.raises(ValueError, match=r"expected c of shape \(2, 4\)"):
        cell(
            torch.randn(2, 3),
            (torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(2, 4), torch.zeros(2, 4)),
        )
    with pytest.raises(TypeError, match="stabilised to be a bool"):
        m.SLSTMCell(3, 4, stabilised="yes")
    layer = m.SLSTM(3, 4, num_layers=2)
    with pytest.raises(ValueError, match=r"expected input with 3 dimensions \(L, N, H_in\)"):
        layer(torch.randn(3))
    with pytest.raises(ValueError, match="dtype torch.float32, got torch.float64"):
        layer(torch.randn(5, 2, 3, dtype=torch.float64))
    state = tuple(torch.zeros(2, 4) for _ in range(4))  # unbatched input, unbatched state
    out, final = layer(torch.randn(5, 3), state)
    assert out.shape == (5, 4) and final[0].shape == (2, 4)


@pytest.mark.parametrize("i_bias", [-1000.0, -120.0, -100.0, 1000.0])
def test_slstm_is_finite_for_any_finite_input_gate(i_bias):
    """With m_0 = 0, ĩ = -100 gave NaN gradients and -120 NaN outputs; m_1 = ĩ_1 fixes both."""
    torch.manual_seed(6)
    layer = m.SLSTM(3, 4, num_layers=2)
    with torch.no_grad():
        for cell in layer.cells:
            cell.bias[:4] = i_bias  # the input gate's pre-activation ĩ, far from 0
    x = torch.randn(20, 2, 3, requires_grad=True)
    out, (h_n, c_n, n_n, m_n) = layer(x)
    out.square().sum().backward()
    for t in (out, h_n, c_n, n_n, m_n, x.grad, *(p.grad for p in layer.parameters())):
        assert bool(torch.isfinite(t).all())
    assert bool((n_n >= 1 - 1e-6).all())  # one of i', f' is 1 at every step: n_t >= 1
    assert float(x.grad.abs().max()) > 0


def test_slstm_first_step_starts_the_stabiliser_at_the_input_gate():
    cell = m.SLSTMCell(2, 3, dtype=torch.float64)
    x = torch.randn(4, 2, dtype=torch.float64)
    h, c, n, m_1 = cell(x)
    i_tilde = torch.nn.functional.linear(x, cell.weight_ih, cell.bias)[:, :3]  # ĩ_1, h_0 = 0
    torch.testing.assert_close(m_1, i_tilde)  # m_1 = ĩ_1 from the zero state
    torch.testing.assert_close(n, torch.ones_like(n))  # i'_1 = exp(0) = 1, n_0 = 0
