"""Tests of companion.numpy_lstm: the hand-written backward pass against torch autograd and finite
differences, truncated BPTT against a detached autograd reference, the optimisers, the regressor."""

from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest
import torch

import companion.numpy_lstm as nl
from companion.numpy_lstm import (
    SGD,
    Adam,
    NumpyLSTMRegressor,
    gradient_check,
    init_params,
    lstm_backward,
    lstm_forward,
    lstm_step_backward,
    lstm_step_forward,
    numerical_gradient,
    params_from_torch,
    params_to_torch,
)

L, N, I, H = 6, 3, 4, 5
ATOL = 1e-10


def _data(seed: int = 0, steps: int = L) -> dict[str, np.ndarray]:
    """Inputs, an initial state and the weights of a linear loss Σ A⊙hs + Σ B⊙h_T + Σ C⊙c_T."""
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((steps, N, I)),
        "h0": 0.5 * rng.standard_normal((N, H)),
        "c0": rng.standard_normal((N, H)),
        "A": rng.standard_normal((steps, N, H)),
        "B": rng.standard_normal((N, H)),
        "C": rng.standard_normal((N, H)),
    }


def _torch_lstm(seed: int = 0, bias: bool = True) -> torch.nn.LSTM:
    torch.manual_seed(seed)
    return torch.nn.LSTM(I, H, bias=bias).double()


def _t(array: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(array, dtype=torch.float64, requires_grad=grad)


def _close(a, b, atol: float = ATOL) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=atol)


def test_module_does_not_import_torch_at_top_level():
    tree = ast.parse(inspect.getsource(nl))
    for node in tree.body:  # only module-level statements: imports inside functions are lazy
        if isinstance(node, ast.Import):
            assert all(alias.name.split(".")[0] != "torch" for alias in node.names)
        if isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] != "torch"


def test_init_params_shapes_range_and_seed():
    p = init_params(I, H, seed=3)
    assert {k: v.shape for k, v in p.items()} == {
        "weight_ih": (4 * H, I),
        "weight_hh": (4 * H, H),
        "bias_ih": (4 * H,),
        "bias_hh": (4 * H,),
    }
    assert all(v.dtype == np.float64 and np.abs(v).max() <= 1 / np.sqrt(H) for v in p.values())
    again = init_params(I, H, seed=3)
    assert all(np.array_equal(p[k], again[k]) for k in p)
    assert not np.array_equal(p["weight_hh"], init_params(I, H, seed=4)["weight_hh"])
    assert set(init_params(I, H, bias=False)) == {"weight_ih", "weight_hh"}
    assert init_params(I, H, dtype=np.float32)["weight_ih"].dtype == np.float32


def test_params_round_trip_through_torch_lstm_and_cell():
    lstm = _torch_lstm()
    p = params_from_torch(lstm)
    assert p["weight_ih"].dtype == np.float64
    _close(p["weight_hh"], lstm.weight_hh_l0.detach().numpy(), atol=0)
    p["weight_hh"][0, 0] += 1.0  # a copy: the module is untouched
    assert lstm.weight_hh_l0[0, 0].item() != p["weight_hh"][0, 0]

    cell = torch.nn.LSTMCell(I, H)  # float32: params_to_torch casts
    params_to_torch(init_params(I, H, seed=7), cell)
    back = params_from_torch(cell, dtype=None)
    assert back["bias_hh"].dtype == np.float32
    _close(back["bias_hh"], init_params(I, H, seed=7)["bias_hh"], atol=1e-7)

    no_bias = torch.nn.LSTM(I, H, bias=False)
    assert set(params_from_torch(no_bias)) == {"weight_ih", "weight_hh"}
    with pytest.raises(ValueError, match="expected parameters"):
        params_to_torch(init_params(I, H), no_bias)


@pytest.mark.parametrize(
    "module, error, fragment",
    [
        (torch.nn.GRU(I, H), TypeError, "got GRU"),
        (torch.nn.LSTMCell(I, H).weight_ih, TypeError, "got Parameter"),
        (torch.nn.LSTM(I, H, num_layers=2), ValueError, "num_layers=2"),
        (torch.nn.LSTM(I, H, bidirectional=True), ValueError, "bidirectional=True"),
        (torch.nn.LSTM(I, H, proj_size=2), ValueError, "proj_size=2"),
    ],
)
def test_params_from_torch_rejects_other_modules(module, error, fragment):
    with pytest.raises(error, match=fragment):
        params_from_torch(module)


@pytest.mark.parametrize("with_state", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_full_bptt_equal_torch_autograd(with_state, bias):
    lstm = _torch_lstm(bias=bias)
    p = params_from_torch(lstm)
    d = _data()
    h0, c0 = (d["h0"], d["c0"]) if with_state else (None, None)

    hs, (h_T, c_T), cache = lstm_forward(p, d["x"], h0, c0)
    grads, dx, dh0, dc0 = lstm_backward(p, cache, d["A"], dh_T=d["B"], dc_T=d["C"])

    x = _t(d["x"], grad=True)
    # Without a given state torch starts from zeros; asking for their gradient is the same graph.
    h0_t = _t(d["h0"] if with_state else np.zeros((N, H)), grad=True)
    c0_t = _t(d["c0"] if with_state else np.zeros((N, H)), grad=True)
    out, (h_n, c_n) = lstm(x, (h0_t[None], c0_t[None]))
    loss = (out * _t(d["A"])).sum() + (h_n[0] * _t(d["B"])).sum() + (c_n[0] * _t(d["C"])).sum()
    loss.backward()

    _close(hs, out.detach())
    _close(h_T, h_n[0].detach())
    _close(c_T, c_n[0].detach())
    assert set(grads) == set(p)
    for key in p:
        _close(grads[key], getattr(lstm, key + "_l0").grad)
    _close(dx, x.grad)
    _close(dh0, h0_t.grad)
    _close(dc0, c0_t.grad)


def test_step_backward_equals_torch_cell():
    cell = torch.nn.LSTMCell(I, H).double()
    p = params_from_torch(cell)
    d = _data()
    h, c, step = lstm_step_forward(p, d["x"][0], d["h0"], d["c0"])
    dx, dh_prev, dc_prev, step_grads = lstm_step_backward(d["A"][0], d["B"], step, p)

    x, h0, c0 = _t(d["x"][0], True), _t(d["h0"], True), _t(d["c0"], True)
    h_t, c_t = cell(x, (h0, c0))
    ((h_t * _t(d["A"][0])).sum() + (c_t * _t(d["B"])).sum()).backward()
    _close(h, h_t.detach())
    _close(c, c_t.detach())
    _close(dx, x.grad)
    _close(dh_prev, h0.grad)
    _close(dc_prev, c0.grad)
    for key in p:
        _close(step_grads[key], getattr(cell, key).grad)


def _truncated_reference(p, d, k):
    """Autograd reference of truncate=k: for each t a fresh graph over steps max(0, t-k+1) … t,
    starting from the detached state h_{t-k}, c_{t-k} (or from the initial-state leaves when the
    window reaches step 0), then the gradients of all these per-step losses summed."""
    cell = torch.nn.LSTMCell(I, H).double()
    params_to_torch(p, cell)
    x, h0, c0 = _t(d["x"], True), _t(d["h0"], True), _t(d["c0"], True)
    with torch.no_grad():  # the forward states, to start windows from
        states, state = [], (h0, c0)
        for t in range(L):
            state = cell(x[t], state)
            states.append(state)
    for t in range(L):
        start = max(0, t - k + 1)
        h, c = (
            (h0, c0)
            if start == 0
            else (states[start - 1][0].detach(), states[start - 1][1].detach())
        )
        for s in range(start, t + 1):
            h, c = cell(x[s], (h, c))
        loss_t = (h * _t(d["A"][t])).sum()
        if t == L - 1:
            loss_t = loss_t + (h * _t(d["B"])).sum() + (c * _t(d["C"])).sum()
        loss_t.backward()
    return {key: getattr(cell, key).grad.numpy() for key in p}, x.grad, h0.grad, c0.grad


@pytest.mark.parametrize("k", [1, 2, 3, L - 1, L, L + 3])
def test_truncated_bptt_equals_detached_autograd_reference(k):
    p = init_params(I, H, seed=1)
    d = _data(seed=2)
    _, _, cache = lstm_forward(p, d["x"], d["h0"], d["c0"])
    grads, dx, dh0, dc0 = lstm_backward(p, cache, d["A"], dh_T=d["B"], dc_T=d["C"], truncate=k)
    ref_grads, ref_dx, ref_dh0, ref_dc0 = _truncated_reference(p, d, k)
    for key in p:
        _close(grads[key], ref_grads[key])
    _close(dx, ref_dx)
    _close(dh0, ref_dh0)
    _close(dc0, ref_dc0)


def test_truncation_really_truncates_and_saturates_at_L():
    p = init_params(I, H, seed=1)
    d = _data(seed=2)
    _, _, cache = lstm_forward(p, d["x"], d["h0"], d["c0"])
    full = lstm_backward(p, cache, d["A"], d["B"], d["C"])
    # The windowed algorithm itself (not the shortcut lstm_backward takes for k >= L) at k = L.
    windowed = nl._bptt_windowed(p, cache, d["A"], d["B"], d["C"], L)
    for key in p:
        _close(windowed[0][key], full[0][key], atol=1e-12)
    for a, b in zip(windowed[1:], full[1:]):
        _close(a, b, atol=1e-12)
    # k = 1: the loss at t only reaches x_t, so with a loss at the last step only, dx[:-1] = 0 and
    # the initial state gets nothing; k = L - 1 still misses x_0.
    zeros = np.zeros_like(d["A"])
    _, dx1, dh0_1, _ = lstm_backward(p, cache, zeros, dh_T=d["B"], truncate=1)
    assert np.all(dx1[:-1] == 0) and np.abs(dx1[-1]).max() > 0 and np.all(dh0_1 == 0)
    _, dx5, _, _ = lstm_backward(p, cache, zeros, dh_T=d["B"], truncate=L - 1)
    assert np.all(dx5[0] == 0) and np.all(np.abs(dx5[1:]).max(axis=(1, 2)) > 0)


@pytest.mark.parametrize("with_state, bias", [(True, True), (False, True), (True, False)])
def test_gradient_check_passes_in_float64(with_state, bias):
    p = init_params(3, 4, seed=5, bias=bias)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 2, 3))
    state = (
        (rng.standard_normal((2, 4)), rng.standard_normal((2, 4))) if with_state else (None, None)
    )
    assert gradient_check(p, x, *state) < 1e-6


def test_gradient_check_catches_a_wrong_backward(monkeypatch):
    p = init_params(3, 4, seed=5)
    x = np.random.default_rng(6).standard_normal((3, 2, 3))
    right = nl.lstm_step_backward

    def forgets_the_forget_gate(dh, dc, step_cache, params):  # the classic bug: dc_prev = dc_total
        dx, dh_prev, dc_prev, grads = right(dh, dc, step_cache, params)
        return dx, dh_prev, dc_prev / step_cache.f, grads

    monkeypatch.setattr(nl, "lstm_step_backward", forgets_the_forget_gate)
    assert gradient_check(p, x) > 1e-3


def test_numerical_gradient_is_central_differences_and_restores():
    params = {"w": np.array([[1.0, -2.0], [0.5, 3.0]])}
    before = params["w"].copy()
    grad = numerical_gradient(lambda q: float(np.sum(q["w"] ** 3)), params, "w")
    _close(grad, 3 * before**2, atol=1e-8)
    assert np.array_equal(params["w"], before)
    with pytest.raises(KeyError, match="got 'v'"):
        numerical_gradient(lambda q: 0.0, params, "v")


def test_adam_equals_torch_adam():
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    ours = Adam(lr=0.05, betas=(0.8, 0.99), eps=1e-6)
    theirs = torch.optim.Adam(tensors.values(), lr=0.05, betas=(0.8, 0.99), eps=1e-6)
    for _ in range(5):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        ours.step(params, grads)
        for key, tensor in tensors.items():
            tensor.grad = torch.tensor(grads[key])
        theirs.step()
    for key in params:
        _close(params[key], tensors[key].detach(), atol=1e-12)


def test_sgd_updates_in_place():
    params = {"w": np.array([1.0, 2.0])}
    array = params["w"]
    SGD(lr=0.5).step(params, {"w": np.array([2.0, -2.0])})
    assert params["w"] is array
    _close(array, [0.0, 3.0], atol=0)
    with pytest.raises(KeyError, match="got 'v'"):
        SGD(0.1).step(params, {"v": np.zeros(2)})
    with pytest.raises(
        ValueError, match=r"expected gradient 'w' of shape \(2,\), got shape \(3,\)"
    ):
        Adam().step(params, {"w": np.zeros(3)})


def test_regressor_shapes_and_gradients():
    model = NumpyLSTMRegressor(3, 4, 2, seed=1)
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((4, 3, 3)), rng.standard_normal((3, 2))
    assert model.params["head_weight"].shape == (2, 4) and model.params["head_bias"].shape == (2,)
    assert model.predict(x).shape == (3, 2)
    loss, grads = model.loss_and_grads(x, y)
    assert loss == pytest.approx(np.mean((model.predict(x) - y) ** 2))
    assert set(grads) == set(model.params)

    def f(_params):
        return model.loss_and_grads(x, y)[0]

    for key in model.params:
        numeric = numerical_gradient(f, model.params, key)
        assert nl._relative_error(grads[key], numeric) < 1e-6, key
    # The loss sits at the last step only, so truncate=L is the full gradient and truncate=1 keeps
    # the head's gradient but changes the recurrent one.
    _, full = model.loss_and_grads(x, y, truncate=4)
    _, short = model.loss_and_grads(x, y, truncate=1)
    _close(short["head_weight"], grads["head_weight"], atol=0)
    assert not np.allclose(short["weight_hh"], grads["weight_hh"])
    _close(full["weight_hh"], grads["weight_hh"])


def test_regressor_learns_the_sum_of_its_inputs_with_adam():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(5, 32, 1))
    y = x.sum(axis=0)  # (N, 1)
    model = NumpyLSTMRegressor(1, 8, 1, seed=0)
    optimiser = Adam(lr=0.03)
    first, _ = model.loss_and_grads(x, y)
    for _ in range(300):
        loss, grads = model.loss_and_grads(x, y)
        optimiser.step(model.params, grads)
    assert loss < 0.05 * first, (first, loss)


@pytest.mark.parametrize(
    "call, fragment",
    [
        (
            lambda p: lstm_forward(p, np.zeros(4)),
            r"expected x with 3 dimensions \(L, N, I\), got shape \(4,\)",
        ),
        (
            lambda p: lstm_forward(p, np.zeros((2, 3, 7))),
            r"expected x of shape \(L, N, I\) = \(·, ·, 4\), got shape \(2, 3, 7\)",
        ),
        (
            lambda p: lstm_forward(p, np.zeros((0, 3, 4))),
            r"at least one step .* got shape \(0, 3, 4\)",
        ),
        (
            lambda p: lstm_forward(p, np.zeros((2, 3, 4)), h0=np.zeros((1, 3, 5))),
            r"expected h0 of shape \(N, H\) = \(3, 5\), got shape \(1, 3, 5\)",
        ),
        (
            lambda p: lstm_forward(p, np.zeros((2, 3, 4)), c0=np.zeros((3, 6))),
            r"expected c0 .* got shape \(3, 6\)",
        ),
        (
            lambda p: lstm_step_forward(p, np.zeros((3, 4)), np.zeros((2, 5)), np.zeros((3, 5))),
            r"expected h_prev of shape \(N, H\) = \(3, 5\), got shape \(2, 5\)",
        ),
        (
            lambda p: lstm_forward({**p, "weight_ih": np.zeros((12, 4))}, np.zeros((2, 3, 4))),
            r"expected weight_ih of shape \(4H, I\) = \(20, ·\), got shape \(12, 4\)",
        ),
        (
            lambda p: lstm_forward({**p, "bias_hh": np.zeros(5)}, np.zeros((2, 3, 4))),
            r"expected bias_hh of shape \(4H,\) = \(20,\), got shape \(5,\)",
        ),
        (
            lambda p: lstm_backward(
                p, lstm_forward(p, np.zeros((2, 3, 4)))[2], np.zeros((3, 3, 5))
            ),
            r"expected dhs of shape \(L, N, H\) = \(2, 3, 5\), got shape \(3, 3, 5\)",
        ),
        (
            lambda p: lstm_backward(
                p, lstm_forward(p, np.zeros((2, 3, 4)))[2], None, dh_T=np.zeros(5)
            ),
            r"expected dh_T .* got shape \(5,\)",
        ),
        (
            lambda p: lstm_backward(p, lstm_forward(p, np.zeros((2, 3, 4)))[2], None, truncate=0),
            "lstm_backward: expected truncate >= 1, got 0",
        ),
        (
            lambda p: lstm_backward(
                init_params(4, 6), lstm_forward(p, np.zeros((2, 3, 4)))[2], None
            ),
            "expected a cache for I = 4, H = 6 .* got one for I = 4, H = 5",
        ),
        (
            lambda p: NumpyLSTMRegressor(4, 5, 2).loss_and_grads(np.zeros((2, 3, 4)), np.zeros(3)),
            r"expected y of shape \(N, O\) = \(3, 2\), got shape \(3,\)",
        ),
        (lambda p: init_params(0, 5), "init_params: expected input_size >= 1, got 0"),
    ],
)
def test_bad_input_raises_naming_expected_and_got(call, fragment):
    with pytest.raises(ValueError, match=fragment):
        call(init_params(I, H))


def test_truncate_follows_the_package_integer_rule():
    p = init_params(I, H)
    cache = lstm_forward(p, np.zeros((2, 3, I)))[2]
    with pytest.raises(TypeError, match="lstm_backward: expected an int truncate, got float 2.5"):
        lstm_backward(p, cache, None, truncate=2.5)
    _, dx, _, _ = lstm_backward(p, cache, None, truncate=np.int64(1))  # numpy ints count
    assert dx.shape == (2, 3, I)
