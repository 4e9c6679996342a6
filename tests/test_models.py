"""companion.models: cells and layers that are drop-in twins of torch.nn's (constructor,
parameters, initialisation, forward, outputs and gradients), with named input errors, gate
recording and parameter counts."""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Any, Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from companion import models as m

LAYERS = {"RNN": (m.RNN, nn.RNN), "LSTM": (m.LSTM, nn.LSTM), "GRU": (m.GRU, nn.GRU)}
CELLS = {
    "RNNCell": (m.RNNCell, nn.RNNCell),
    "LSTMCell": (m.LSTMCell, nn.LSTMCell),
    "GRUCell": (m.GRUCell, nn.GRUCell),
}
# float32: the two sides round differently (folded biases, lerp), never by more than this.
TOL = {"rtol": 1e-5, "atol": 1e-5}
# derandomize: the same examples on every run, so the suite's verdict does not change by chance.
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


def twins(kind: str, *args: Any, **kwargs: Any) -> tuple[nn.Module, nn.Module]:
    """(ours, torch.nn's), built with the same arguments; ours gets torch.nn's weights."""
    ours_cls, torch_cls = {**LAYERS, **CELLS}[kind]
    reference = torch_cls(*args, **kwargs)
    ours = ours_cls(*args, **kwargs)
    ours.load_state_dict(reference.state_dict())
    return ours, reference


def random_states(kind: str, shape: tuple[int, ...]) -> list[torch.Tensor]:
    """Initial states that require grad: two (h, c) for the LSTM, one h otherwise."""
    count = 2 if kind.startswith("LSTM") else 1
    return [torch.randn(shape, requires_grad=True) for _ in range(count)]


def as_hx(kind: str, states: list[torch.Tensor]) -> Any:
    if not states:
        return None
    return tuple(states) if kind.startswith("LSTM") else states[0]


def flat(result: Any) -> list[torch.Tensor]:
    """Every tensor in a forward's result: output, h_n (, c_n), or a cell's h (, c)."""
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, PackedSequence):
        return [result.data]
    return [t for part in result for t in flat(part)]


def run_and_backward(
    module: nn.Module, inputs: list[torch.Tensor], call: Callable[[nn.Module], Any]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The outputs of ``call(module)``, and the gradients of a fixed random projection of them
    with respect to every parameter (in order) and every tensor in ``inputs``."""
    for x in inputs:
        x.grad = None
    module.zero_grad()
    outputs = flat(call(module))
    generator = torch.Generator().manual_seed(123)
    weights = [torch.randn(out.shape, generator=generator) for out in outputs]
    sum((out * w).sum() for out, w in zip(outputs, weights)).backward()
    return outputs, [p.grad for p in module.parameters()] + [x.grad for x in inputs]


def assert_same(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, **TOL)


# --- constructor, parameters, initialisation -----------------------------------------------------


def signature(cls: type) -> list[tuple[str, Any]]:
    return [(p.name, p.default) for p in inspect.signature(cls.__init__).parameters.values()]


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_signatures_match_torch(kind: str) -> None:
    ours_cls, torch_cls = CELLS[kind]
    assert signature(ours_cls) == signature(torch_cls)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_layer_signatures_match_torch(kind: str) -> None:
    # torch.nn's layers take *args; compare with the order and defaults their docs give.
    empty = inspect.Parameter.empty
    expected = [("self", empty), ("input_size", empty), ("hidden_size", empty), ("num_layers", 1)]
    if kind == "RNN":
        expected.append(("nonlinearity", "tanh"))
    expected += [("bias", True), ("batch_first", False), ("dropout", 0.0), ("bidirectional", False)]
    if kind == "LSTM":
        expected.append(("proj_size", 0))
    expected += [("device", None), ("dtype", None)]
    if kind != "LSTM":  # accepted as a keyword only, to refuse it with torch's ValueError
        expected.append(("proj_size", 0))
    assert signature(LAYERS[kind][0]) == expected


@pytest.mark.parametrize(
    "kind, args",
    [
        ("RNN", (3, 5, 2, "relu", False, True, 0.25, True)),
        ("LSTM", (3, 5, 2, False, True, 0.25, True)),
        ("GRU", (3, 5, 3, True, False, 0.0, True)),
    ],
)
def test_positional_arguments_mean_the_same(kind: str, args: tuple) -> None:
    ours, reference = twins(kind, *args)
    names = ["input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout"]
    for name in names + ["bidirectional", "nonlinearity", "proj_size"]:
        assert getattr(ours, name, None) == getattr(reference, name, None), name


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize(
    "num_layers, bidirectional, bias",
    [(1, False, True), (2, True, True), (3, True, False), (2, False, False)],
)
def test_layer_parameters_match_torch(
    kind: str, num_layers: int, bidirectional: bool, bias: bool
) -> None:
    kwargs = {"num_layers": num_layers, "bidirectional": bidirectional, "bias": bias}
    torch.manual_seed(1)
    reference = LAYERS[kind][1](4, 6, **kwargs)
    torch.manual_seed(1)
    ours = LAYERS[kind][0](4, 6, **kwargs)
    shapes = [(n, p.shape) for n, p in ours.named_parameters()]
    assert shapes == [(n, p.shape) for n, p in reference.named_parameters()]
    assert ours._all_weights == reference._all_weights
    assert [[w.shape for w in ws] for ws in ours.all_weights] == [
        [w.shape for w in ws] for ws in reference.all_weights
    ]
    # Same registration order and same init: the same seed gives the same weights.
    for (name, p), q in zip(ours.named_parameters(), reference.parameters()):
        assert torch.equal(p, q), name
        assert p.abs().max() <= 1 / math.sqrt(6)
    if kind != "RNN":  # ours also shows nonlinearity=relu; torch.nn's RNN does not
        assert repr(ours) == repr(reference)


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("bias", [True, False])
def test_cell_parameters_match_torch(kind: str, bias: bool) -> None:
    torch.manual_seed(2)
    reference = CELLS[kind][1](4, 6, bias=bias)
    torch.manual_seed(2)
    ours = CELLS[kind][0](4, 6, bias=bias)
    shapes = [(n, p.shape) for n, p in ours.named_parameters()]
    assert shapes == [(n, p.shape) for n, p in reference.named_parameters()]
    for p, q in zip(ours.parameters(), reference.parameters()):
        assert torch.equal(p, q)
    assert (ours.bias_ih is None) == (reference.bias_ih is None) == (not bias)
    assert repr(ours) == repr(reference)


def test_rnn_cell_repr_shows_relu_like_torch() -> None:
    assert repr(m.RNNCell(2, 3, nonlinearity="relu")) == repr(nn.RNNCell(2, 3, nonlinearity="relu"))


@pytest.mark.parametrize("kind", list(LAYERS))
def test_state_dicts_load_both_ways(kind: str) -> None:
    ours_cls, torch_cls = LAYERS[kind]
    ours, reference = ours_cls(3, 4, 2, bidirectional=True), torch_cls(3, 4, 2, bidirectional=True)
    x = torch.randn(5, 2, 3)
    ours.load_state_dict(reference.state_dict())  # strict by default
    assert_same(flat(ours(x)), flat(reference(x)))
    ours.reset_parameters()
    reference.load_state_dict(ours.state_dict())
    assert_same(flat(ours(x)), flat(reference(x)))


def test_factory_kwargs() -> None:
    for cls in [m.LSTM, m.GRU, m.RNN, m.LSTMCell, m.GRUCell, m.RNNCell]:
        module = cls(3, 4, dtype=torch.float64, device="cpu")
        assert all(p.dtype == torch.float64 and p.device.type == "cpu" for p in module.parameters())


# --- forward: outputs and gradients equal torch.nn's ---------------------------------------------


@SETTINGS
@given(
    kind=st.sampled_from(list(LAYERS)),
    input_size=st.integers(1, 5),
    hidden_size=st.integers(1, 6),
    num_layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    batch_first=st.booleans(),
    bias=st.booleans(),
    relu=st.booleans(),
    unbatched=st.booleans(),
    with_hx=st.booleans(),
    length=st.integers(1, 5),
    batch=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_layers_match_torch(
    kind: str,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bidirectional: bool,
    batch_first: bool,
    bias: bool,
    relu: bool,
    unbatched: bool,
    with_hx: bool,
    length: int,
    batch: int,
    seed: int,
) -> None:
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {"num_layers": num_layers, "bidirectional": bidirectional}
    kwargs.update(batch_first=batch_first, bias=bias)
    if kind == "RNN" and relu:
        kwargs["nonlinearity"] = "relu"
    ours, reference = twins(kind, input_size, hidden_size, **kwargs)
    if unbatched:
        x = torch.randn(length, input_size, requires_grad=True)
    elif batch_first:
        x = torch.randn(batch, length, input_size, requires_grad=True)
    else:
        x = torch.randn(length, batch, input_size, requires_grad=True)
    layers = num_layers * (2 if bidirectional else 1)
    state_shape = (layers, hidden_size) if unbatched else (layers, batch, hidden_size)
    states = random_states(kind, state_shape) if with_hx else []
    hx = as_hx(kind, states)
    ours_out, ours_grads = run_and_backward(ours, [x, *states], lambda mod: mod(x, hx))
    ref_out, ref_grads = run_and_backward(reference, [x, *states], lambda mod: mod(x, hx))
    assert_same(ours_out, ref_out)
    assert_same(ours_grads, ref_grads)


@SETTINGS
@given(
    kind=st.sampled_from(list(CELLS)),
    input_size=st.integers(1, 5),
    hidden_size=st.integers(1, 6),
    bias=st.booleans(),
    relu=st.booleans(),
    unbatched=st.booleans(),
    with_hx=st.booleans(),
    batch=st.integers(1, 3),
    steps=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_cells_match_torch(
    kind: str,
    input_size: int,
    hidden_size: int,
    bias: bool,
    relu: bool,
    unbatched: bool,
    with_hx: bool,
    batch: int,
    steps: int,
    seed: int,
) -> None:
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {"bias": bias}
    if kind == "RNNCell" and relu:
        kwargs["nonlinearity"] = "relu"
    ours, reference = twins(kind, input_size, hidden_size, **kwargs)
    lead = () if unbatched else (batch,)
    xs = torch.randn((steps, *lead, input_size), requires_grad=True)
    states = random_states(kind, (*lead, hidden_size)) if with_hx else []

    def unroll(cell: nn.Module) -> list[Any]:
        hx = as_hx(kind, states)
        results = []
        for x in xs.unbind(0):
            hx = cell(x, hx)
            results.append(hx)
        return results

    ours_out, ours_grads = run_and_backward(ours, [xs, *states], unroll)
    ref_out, ref_grads = run_and_backward(reference, [xs, *states], unroll)
    assert_same(ours_out, ref_out)
    assert_same(ours_grads, ref_grads)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    kind=st.sampled_from(list(LAYERS)),
    lengths=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    num_layers=st.integers(1, 2),
    bidirectional=st.booleans(),
    enforce_sorted=st.booleans(),
    with_hx=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_packed_sequences_match_torch(
    kind: str,
    lengths: list[int],
    num_layers: int,
    bidirectional: bool,
    enforce_sorted: bool,
    with_hx: bool,
    seed: int,
) -> None:
    torch.manual_seed(seed)
    if enforce_sorted:
        lengths = sorted(lengths, reverse=True)
    kwargs = {"num_layers": num_layers, "bidirectional": bidirectional, "batch_first": True}
    ours, reference = twins(kind, 3, 4, **kwargs)
    x = torch.randn(len(lengths), max(lengths), 3, requires_grad=True)
    layers = num_layers * (2 if bidirectional else 1)
    states = random_states(kind, (layers, len(lengths), 4)) if with_hx else []
    hx = as_hx(kind, states)

    def call(module: nn.Module) -> Any:
        packed = pack_padded_sequence(
            x, torch.tensor(lengths), batch_first=True, enforce_sorted=enforce_sorted
        )
        output, h_n = module(packed, hx)
        # Same layout as the input, so output.data lines up with packed.data row by row.
        for field in ["batch_sizes", "sorted_indices", "unsorted_indices"]:
            expected, got = getattr(packed, field), getattr(output, field)
            assert got is None if expected is None else torch.equal(got, expected)
        return output, h_n

    ours_out, ours_grads = run_and_backward(ours, [x, *states], call)
    ref_out, ref_grads = run_and_backward(reference, [x, *states], call)
    assert_same(ours_out, ref_out)
    assert_same(ours_grads, ref_grads)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_dropout_between_layers_as_torch(kind: str) -> None:
    ours, reference = twins(kind, 3, 8, num_layers=3, dropout=0.5, bidirectional=True)
    x = torch.randn(6, 4, 3)
    # torch.nn draws its masks with the same calls, so the same seed gives the same masks.
    torch.manual_seed(7)
    ours_train = flat(ours(x))
    torch.manual_seed(7)
    assert_same(ours_train, flat(reference(x)))
    ours.eval()
    reference.eval()
    ours_eval = flat(ours(x))
    assert_same(ours_eval, flat(reference(x)))
    assert not torch.allclose(ours_train[0], ours_eval[0])
    # Nothing is dropped on the input or on the last layer's output: one layer is deterministic.
    single = LAYERS[kind][0](3, 8).train()
    assert_same(flat(single(x)), flat(single(x)))


def test_dropout_with_one_layer_warns() -> None:
    with pytest.warns(
        UserWarning, match=r"LSTM: dropout acts between stacked layers.*num_layers=1"
    ):
        m.LSTM(3, 4, dropout=0.3)


def test_float64_and_empty_batch() -> None:
    ours, reference = twins("LSTM", 3, 4, num_layers=2)
    ours.double()
    reference.double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    output, (h_n, c_n) = ours(x)
    assert output.dtype == h_n.dtype == c_n.dtype == torch.float64
    torch.testing.assert_close(output, reference(x)[0], rtol=1e-12, atol=1e-12)
    output, h_n = m.GRU(3, 4)(torch.randn(5, 0, 3))
    assert output.shape == (5, 0, 4) and h_n.shape == (1, 0, 4)


def test_initial_states_follow_the_input_not_the_default_device() -> None:
    layer, cell = m.LSTM(3, 4), m.GRUCell(3, 4)
    x = torch.randn(5, 2, 3)
    # With "meta" as the default device, zeros made without device=... would land there.
    with torch.device("meta"):
        output, (h_n, c_n) = layer(x)
        h = cell(x[0])
    assert {output.device.type, h_n.device.type, c_n.device.type, h.device.type} == {"cpu"}
    # A model and input elsewhere ("meta" stands in for a GPU here) get their zeros there.
    output, (h_n, c_n) = layer.to("meta")(x.to("meta"))
    assert h_n.device.type == c_n.device.type == "meta" and h_n.shape == (1, 2, 4)


# --- input validation ----------------------------------------------------------------------------


def case(make: Callable[[], Any], error: type[Exception], message: str, id: str) -> Any:
    return pytest.param(make, error, message, id=id)


def x(*shape: int, **kwargs: Any) -> torch.Tensor:
    return torch.randn(shape, **kwargs)


def zeros(*shape: int, **kwargs: Any) -> torch.Tensor:
    return torch.zeros(shape, **kwargs)


LAYER_ERRORS = [
    case(
        lambda: m.LSTM(3, 5)(x(4)),
        ValueError,
        r"LSTM: expected input with 3 dimensions \(L, N, H_in\) or 2 \(L, H_in\), got shape \(4,\)",
        id="rank",
    ),
    case(
        lambda: m.LSTM(3, 5, batch_first=True)(x(1, 2, 3, 4)),
        ValueError,
        r"expected input with 3 dimensions \(N, L, H_in\) or 2 \(L, H_in\), "
        r"got shape \(1, 2, 3, 4\)",
        id="rank-batch-first",
    ),
    case(
        lambda: m.GRU(3, 5)(x(6, 2, 4)),
        ValueError,
        r"GRU: expected input with input_size=3 features in its last dimension, "
        r"got shape \(6, 2, 4\)",
        id="features",
    ),
    case(
        lambda: m.LSTM(3, 5)(x(6, 2, 3), zeros(1, 2, 5)),
        TypeError,
        r"LSTM: expected hx to be a tuple \(h_0, c_0\), got Tensor",
        id="lstm-hx-not-tuple",
    ),
    case(
        lambda: m.LSTM(3, 5)(x(6, 2, 3), (zeros(1, 2, 5),)),
        TypeError,
        r"LSTM: expected hx to be a tuple \(h_0, c_0\), got tuple of length 1",
        id="lstm-hx-one-tensor",
    ),
    case(
        lambda: m.GRU(3, 5)(x(6, 2, 3), (zeros(1, 2, 5),)),
        TypeError,
        r"GRU: expected h_0 to be a Tensor, got tuple",
        id="gru-hx-tuple",
    ),
    case(
        lambda: m.LSTM(3, 5, 2)(x(6, 2, 3), (zeros(2, 2, 5), zeros(1, 2, 5))),
        ValueError,
        r"LSTM: expected c_0 of shape \(2, 2, 5\) \(num_layers \* num_directions, N, H\), "
        r"got shape \(1, 2, 5\)",
        id="hx-shape",
    ),
    case(
        lambda: m.RNN(3, 5, bidirectional=True)(x(6, 3), zeros(2, 1, 5)),
        ValueError,
        r"RNN: expected h_0 of shape \(2, 5\) \(num_layers \* num_directions, H\) for unbatched "
        r"input, got shape \(2, 1, 5\)",
        id="hx-shape-unbatched",
    ),
    case(
        lambda: m.GRU(3, 5)(x(6, 2, 3, device="meta")),
        RuntimeError,
        r"GRU: expected input on the weights' device cpu, got input on meta",
        id="input-device",
    ),
    case(
        lambda: m.GRU(3, 5)(x(6, 2, 3), zeros(1, 2, 5, device="meta")),
        RuntimeError,
        r"GRU: expected h_0 on the input's device cpu, got h_0 on meta",
        id="hx-device",
    ),
    case(
        lambda: m.LSTM(3, 5)(x(6, 2, 3, dtype=torch.float64)),
        ValueError,
        r"LSTM: expected input in the weights' dtype torch.float32, got torch.float64",
        id="input-dtype",
    ),
    case(
        lambda: m.LSTM(3, 5)(x(6, 2, 3), (zeros(1, 2, 5), zeros(1, 2, 5, dtype=torch.float16))),
        ValueError,
        r"LSTM: expected c_0 in the input's dtype torch.float32, got torch.float16",
        id="hx-dtype",
    ),
    case(
        lambda: m.RNN(3, 5)(torch.ones(6, 2, 3, dtype=torch.long)),
        TypeError,
        r"RNN: expected input to be a floating-point tensor, got dtype torch.int64",
        id="integer-input",
    ),
    case(
        lambda: m.RNN(3, 5)([[0.0, 1.0, 2.0]]),
        TypeError,
        r"RNN: expected input to be a Tensor or a PackedSequence, got list",
        id="list-input",
    ),
    case(
        lambda: m.LSTM(3, 5)(x(0, 2, 3)),
        ValueError,
        r"LSTM: expected a sequence length of at least 1, got shape \(0, 2, 3\)",
        id="empty-sequence",
    ),
]
CELL_ERRORS = [
    case(
        lambda: m.LSTMCell(3, 5)(x(2, 2, 3)),
        ValueError,
        r"LSTMCell: expected input with 2 dimensions \(N, H_in\) or 1 \(H_in,\), "
        r"got shape \(2, 2, 3\)",
        id="cell-rank",
    ),
    case(
        lambda: m.GRUCell(3, 5)(x(2, 4)),
        ValueError,
        r"GRUCell: expected input with input_size=3 features in its last dimension, "
        r"got shape \(2, 4\)",
        id="cell-features",
    ),
    case(
        lambda: m.LSTMCell(3, 5)(x(2, 3), zeros(2, 5)),
        TypeError,
        r"LSTMCell: expected hx to be a tuple \(h, c\), got Tensor",
        id="cell-hx-not-tuple",
    ),
    case(
        lambda: m.RNNCell(3, 5)(x(2, 3), zeros(3, 5)),
        ValueError,
        r"RNNCell: expected h of shape \(2, 5\) \(N, H\), got shape \(3, 5\)",
        id="cell-hx-shape",
    ),
    case(
        lambda: m.GRUCell(3, 5)(x(3), zeros(1, 5)),
        ValueError,
        r"GRUCell: expected h of shape \(5,\) \(H,\) for unbatched input, got shape \(1, 5\)",
        id="cell-hx-shape-unbatched",
    ),
    case(
        lambda: m.GRUCell(3, 5)(x(2, 3, device="meta")),
        RuntimeError,
        r"GRUCell: expected input on the weights' device cpu, got input on meta",
        id="cell-device",
    ),
    case(
        lambda: m.LSTMCell(3, 5)(x(2, 3, dtype=torch.float64)),
        ValueError,
        r"LSTMCell: expected input in the weights' dtype torch.float32, got torch.float64",
        id="cell-dtype",
    ),
    case(
        lambda: m.RNNCell(3, 5)(torch.ones(2, 3, dtype=torch.int32)),
        TypeError,
        r"RNNCell: expected input to be a floating-point tensor, got dtype torch.int32",
        id="cell-integer-input",
    ),
]
CONSTRUCTOR_ERRORS = [
    case(
        lambda: m.LSTM(3, 5, proj_size=2),
        NotImplementedError,
        r"LSTM: expected proj_size=0 .* got proj_size=2",
        id="proj-size",
    ),
    case(
        lambda: m.RNN(3, 5, nonlinearity="sigmoid"),
        ValueError,
        r"RNN: expected nonlinearity 'tanh' or 'relu', got 'sigmoid'",
        id="nonlinearity",
    ),
    case(
        lambda: m.RNNCell(3, 5, nonlinearity="gelu"),
        ValueError,
        r"RNNCell: expected nonlinearity 'tanh' or 'relu', got 'gelu'",
        id="cell-nonlinearity",
    ),
    case(
        lambda: m.GRU(3, 5, dropout=1.5),
        ValueError,
        r"GRU: expected dropout to be a probability in \[0, 1\], got 1.5",
        id="dropout",
    ),
    case(
        lambda: m.GRU(3, 0), ValueError, r"GRU: expected hidden_size >= 1, got 0", id="hidden-size"
    ),
    case(
        lambda: m.LSTMCell(3.0, 5),
        TypeError,
        r"LSTMCell: expected an int input_size, got float 3.0",
        id="input-size-type",
    ),
    case(
        lambda: m.RNN(3, 5, num_layers=0),
        ValueError,
        r"RNN: expected num_layers >= 1, got 0",
        id="num-layers",
    ),
    case(
        lambda: m.LSTM(3, 5, batch_first=1),
        TypeError,
        r"LSTM: expected batch_first to be a bool, got int 1",
        id="batch-first-type",
    ),
    case(
        lambda: m.LSTM(3, 5, bidirectional=2),
        TypeError,
        r"LSTM: expected bidirectional to be a bool, got int 2",
        id="bidirectional-2",
    ),
    case(
        lambda: m.GRU(3, 5, proj_size=2),
        ValueError,
        r"GRU: expected proj_size=0 \(projections exist only for the LSTM\), got proj_size=2",
        id="gru-proj-size",
    ),
    case(
        lambda: m.RNN(3, 5, proj_size=1),
        ValueError,
        r"RNN: expected proj_size=0",
        id="rnn-proj-size",
    ),
    case(
        lambda: m.expected_parameters("transformer", 3, 5),
        ValueError,
        r"expected_parameters: expected kind 'rnn', 'lstm' or 'gru', got 'transformer'",
        id="kind",
    ),
    case(
        lambda: m.record_gates(nn.LSTM(3, 5)).__enter__(),
        ValueError,
        r"record_gates: expected a module containing companion RNN/LSTM/GRU cells or layers, "
        r"got LSTM with none",
        id="record-torch-module",
    ),
]


@pytest.mark.parametrize("make, error, message", LAYER_ERRORS + CELL_ERRORS + CONSTRUCTOR_ERRORS)
def test_errors_name_what_was_expected_and_what_came(
    make: Callable[[], Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make()


def test_packed_input_is_checked_too() -> None:
    packed = pack_padded_sequence(x(4, 2, 5), torch.tensor([4, 2]))
    message = (
        r"LSTM: expected input with input_size=3 features in its last dimension, got shape \(6, 5\)"
    )
    with pytest.raises(ValueError, match=message):
        m.LSTM(3, 4)(packed)
    packed = pack_padded_sequence(x(4, 2, 3), torch.tensor([4, 2]))
    with pytest.raises(ValueError, match=r"GRU: expected h_0 of shape \(1, 2, 4\)"):
        m.GRU(3, 4)(packed, zeros(1, 3, 4))


# --- drop-in for torch.nn: the same error types, the same edge cases -----------------------------

# Shape mistakes that torch.nn answers with RuntimeError. Each is run against torch.nn too, so the
# test breaks if torch changes its mind rather than silently testing our own idea of torch.
SHAPE_ATTACKS = {
    "input-size": ("GRU", (3, 5), lambda: (x(6, 2, 4),)),
    "hidden-size": ("LSTM", (3, 5), lambda: (x(6, 2, 3), (zeros(1, 2, 4), zeros(1, 2, 4)))),
    "batch-size": ("RNN", (3, 5), lambda: (x(6, 2, 3), zeros(1, 3, 5))),
    "layers-in-hx": ("GRU", (3, 5, 2), lambda: (x(6, 2, 3), zeros(1, 2, 5))),
    "unbatched-hx-rank": ("RNN", (3, 5), lambda: (x(6, 3), zeros(1, 1, 5))),
    "length-0": ("LSTM", (3, 5), lambda: (x(0, 2, 3),)),
    "cell-input-size": ("GRUCell", (3, 5), lambda: (x(2, 4),)),
    "cell-batch-size": ("LSTMCell", (3, 5), lambda: (x(2, 3), (zeros(3, 5), zeros(3, 5)))),
}


@pytest.mark.parametrize("attack", list(SHAPE_ATTACKS))
def test_shape_errors_are_runtime_errors_as_in_torch(attack: str) -> None:
    kind, args, make_inputs = SHAPE_ATTACKS[attack]
    ours, reference = twins(kind, *args)
    inputs = make_inputs()
    with pytest.raises(RuntimeError):
        reference(*inputs)
    with pytest.raises(RuntimeError) as caught:  # what torch's own tests catch
        ours(*inputs)
    # ... while staying a ValueError with our message, for code written against companion.
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, m.ShapeError)
    assert str(caught.value).startswith(f"{kind}: expected")


# torch's own error inputs for these modules (common_modules.module_error_inputs_torch_nn_*),
# transcribed: (kind, constructor args, constructor kwargs, forward inputs or None, torch's type).
TORCH_ERROR_INPUTS = [
    ("RNNCell", (10, 20), {}, lambda: (x(3, 11), x(3, 20)), RuntimeError),
    ("GRUCell", (10, 20), {}, lambda: (x(3, 10), x(3, 21)), RuntimeError),
    ("RNNCell", (10, 20, True, "relu"), {}, lambda: (x(3, 10), x(5, 20)), RuntimeError),
    ("GRUCell", (10, 20), {}, lambda: (x(3, 10), x(3, 1, 1, 20)), ValueError),
    ("LSTMCell", (10, 20), {}, lambda: (x(3, 11), (x(3, 20), x(3, 20))), RuntimeError),
    ("LSTMCell", (10, 20), {}, lambda: (x(3, 10), (x(3, 21), x(3, 21))), RuntimeError),
    ("LSTMCell", (10, 20), {}, lambda: (x(3, 10), (x(5, 20), x(5, 20))), RuntimeError),
    ("LSTMCell", (10, 20), {}, lambda: (x(3, 10), (x(3, 1, 1, 20),) * 2), ValueError),
    ("RNN", (10, 0, 1), {}, None, ValueError),
    ("GRU", (10, 10, 0), {}, None, ValueError),
    ("LSTM", (3, 5), {}, lambda: (x(2, 4, 3, dtype=torch.float64),), ValueError),
    ("RNN", (3, 5), {"bias": 0}, None, TypeError),
    ("GRU", (3, 5), {"bias": "True"}, None, TypeError),
    ("LSTM", (3, 5), {"batch_first": 1}, None, TypeError),
    ("RNN", (3, 5), {"batch_first": "False"}, None, TypeError),
    ("GRU", (3.0, 5), {}, None, TypeError),
    ("LSTM", ("10", 5), {}, None, TypeError),
    ("RNN", (0, 5), {}, None, ValueError),
    ("GRU", (-1, 5), {}, None, ValueError),
    ("LSTM", (3, 5.0), {}, None, TypeError),
]


@pytest.mark.parametrize("kind, args, kwargs, make_inputs, expected", TORCH_ERROR_INPUTS)
def test_torchs_own_error_inputs_raise_torchs_error_types(
    kind: str, args: tuple, kwargs: dict, make_inputs: Any, expected: type[Exception]
) -> None:
    for cls in dict(**LAYERS, **CELLS)[kind]:
        with pytest.raises(expected):
            module = cls(*args, **kwargs)
            if make_inputs is not None:
                module(*make_inputs())


@pytest.mark.parametrize("kind", list(CELLS))
def test_cells_accept_hidden_size_zero_like_torch(kind: str) -> None:
    ours, reference = twins(kind, 3, 0)
    ours_out, torch_out = ours(x(2, 3)), reference(x(2, 3))
    ours_out = ours_out if isinstance(ours_out, tuple) else (ours_out,)
    torch_out = torch_out if isinstance(torch_out, tuple) else (torch_out,)
    assert [t.shape for t in ours_out] == [t.shape for t in torch_out] == [(2, 0)] * len(ours_out)


@pytest.mark.parametrize("kind", ["RNN", "GRU"])
def test_proj_size_on_rnn_and_gru_is_a_value_error_like_torch(kind: str) -> None:
    ours_cls, torch_cls = LAYERS[kind]
    with pytest.raises(ValueError):
        torch_cls(3, 5, proj_size=2)
    with pytest.raises(ValueError, match=f"{kind}: expected proj_size=0"):
        ours_cls(3, 5, proj_size=2)
    assert ours_cls(3, 5, proj_size=0).proj_size == 0


def test_bidirectional_accepts_1_like_torch() -> None:
    nn.GRU(3, 4, bidirectional=1)  # torch's constructor takes it (its forward then fails)
    reference = nn.GRU(3, 4, bidirectional=True)
    ours = m.GRU(3, 4, bidirectional=1)
    ours.load_state_dict(reference.state_dict())
    assert ours.bidirectional is True and ours.num_directions == 2
    inputs = x(5, 2, 3)
    torch.testing.assert_close(ours(inputs)[0], reference(inputs)[0], **TOL)


@pytest.mark.parametrize("kind", list(LAYERS) + list(CELLS))
def test_cpu_bfloat16_autocast_gives_torch_dtypes(kind: str) -> None:
    torch.manual_seed(0)
    ours, reference = twins(kind, 3, 4)
    inputs = x(5, 2, 3) if kind in LAYERS else x(2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated autocast queries
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = ours(inputs)
            try:
                expected = reference(inputs)
            except RuntimeError:  # oneDNN has no bfloat16 LSTM on some CPUs
                expected = None
    out = out[0] if isinstance(out, tuple) else out
    if expected is not None:
        expected = expected[0] if isinstance(expected, tuple) else expected
        assert out.dtype == expected.dtype
        # torch's float32 GRU still rounds some products to bfloat16: compare at its precision.
        torch.testing.assert_close(out.float(), expected.float(), atol=0.05, rtol=0.05)
    else:
        assert out.dtype == torch.bfloat16


@pytest.mark.parametrize("kind", list(LAYERS) + list(CELLS))
def test_cpu_autocast_takes_bfloat16_input_like_torch(kind: str) -> None:
    torch.manual_seed(0)
    ours, reference = twins(kind, 3, 4)
    inputs = (x(5, 2, 3) if kind in LAYERS else x(2, 3)).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, expected = ours(inputs), reference(inputs)
    out = out[0] if isinstance(out, tuple) else out
    expected = expected[0] if isinstance(expected, tuple) else expected
    assert out.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected.float(), atol=0.05, rtol=0.05)
    with pytest.raises(ValueError, match="expected input in the weights' dtype"):
        ours(inputs)  # outside autocast the dtypes must agree, as in torch.nn


def test_numpy_integers_are_accepted_as_sizes() -> None:
    np = pytest.importorskip("numpy")
    layer = m.LSTM(np.int64(3), np.int32(5), num_layers=np.int64(2))
    cell = m.GRUCell(np.int64(3), np.int64(5))
    assert type(layer.hidden_size) is int and type(cell.input_size) is int
    assert layer(x(4, 2, 3))[0].shape == (4, 2, 5)


# --- gate recording ------------------------------------------------------------------------------


def test_recorded_lstm_gates_match_outputs() -> None:
    H = 4
    model = m.LSTM(3, H, num_layers=2, bidirectional=True, batch_first=True)
    with m.record_gates(model) as rec:
        output, (h_n, c_n) = model(x(2, 5, 3))  # (N, L, H_in)
    gates = rec[""]
    assert set(gates) == {"i", "f", "g", "o", "c", "h"}
    for value in gates.values():
        assert value.shape == (4, 5, 2, H)  # (num_layers·D, L, N, H), time-major
        assert not value.requires_grad
    for name in "ifo":
        assert ((gates[name] > 0) & (gates[name] < 1)).all()
    # The last layer's recorded h is the output (forward, then backward half).
    torch.testing.assert_close(gates["h"][2], output[..., :H].transpose(0, 1))
    torch.testing.assert_close(gates["h"][3], output[..., H:].transpose(0, 1))
    # The final states: the last step going forward, the first step going backward.
    for k in range(4):
        last = -1 if k % 2 == 0 else 0
        torch.testing.assert_close(gates["c"][k, last], c_n[k])
        torch.testing.assert_close(gates["h"][k, last], h_n[k])
    torch.testing.assert_close(gates["h"], gates["o"] * torch.tanh(gates["c"]))  # (3.6)


@pytest.mark.parametrize("kind, names", [("GRU", {"r", "z", "n", "h"}), ("RNN", {"h"})])
def test_recorded_gru_and_rnn(kind: str, names: set[str]) -> None:
    model = LAYERS[kind][0](3, 4, num_layers=2)
    with m.record_gates(model) as rec:
        output, h_n = model(x(6, 3))  # unbatched
    assert set(rec[""]) == names
    assert all(v.shape == (2, 6, 1, 4) for v in rec[""].values())  # unbatched: N = 1
    torch.testing.assert_close(rec[""]["h"][1, :, 0], output)
    torch.testing.assert_close(rec[""]["h"][:, -1, 0], h_n)


def test_recorded_cells_stack_over_calls() -> None:
    cell = m.LSTMCell(3, 4)
    hs = []
    with m.record_gates(cell) as rec:
        state = None
        for x_t in x(5, 2, 3):
            state = cell(x_t, state)
            hs.append(state[0])
    assert set(rec[""]) == {"i", "f", "g", "o", "c", "h"}
    assert rec[""]["g"].shape == (5, 2, 4)  # (steps, N, H)
    torch.testing.assert_close(rec[""]["h"], torch.stack(hs).detach())
    torch.testing.assert_close(rec[""]["c"][-1], state[1].detach())
    with m.record_gates(cell) as rec:
        cell(x(3))  # unbatched: N = 1
    assert rec[""]["h"].shape == (1, 1, 4)


class Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = m.GRU(3, 4, batch_first=True)
        self.decoder = nn.ModuleDict({"cell": m.RNNCell(4, 4), "unused": m.LSTMCell(4, 4)})
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, h_n = self.encoder(x)
        return self.head(self.decoder["cell"](output[:, -1], h_n[0]))


def test_record_gates_uses_qualified_names_and_stops_outside() -> None:
    model = Tagger()
    batch = x(2, 5, 3)
    model(batch)  # before the block: not recorded
    with m.record_gates(model) as rec:
        model(batch)
        model(batch)
        assert rec == {}  # filled in on exit
    model(batch)  # after the block: not recorded
    assert set(rec) == {"encoder", "decoder.cell", "decoder.unused"}
    assert rec["encoder"]["z"].shape == (1, 10, 2, 4)  # two calls joined along time
    assert rec["decoder.cell"]["h"].shape == (2, 2, 4)  # two calls stacked
    assert rec["decoder.unused"] == {}
    assert all(mod._recording is None for mod in model.modules() if hasattr(mod, "_recording"))


def test_record_gates_cleans_up_after_errors_and_refuses_nesting() -> None:
    model = m.LSTM(3, 4)
    with pytest.raises(ZeroDivisionError):
        with m.record_gates(model):
            model(x(2, 1, 3))
            raise ZeroDivisionError
    assert model._recording is None
    with m.record_gates(model):
        with pytest.raises(
            RuntimeError, match=r"record_gates: module '' \(LSTM\) is already being recorded"
        ):
            with m.record_gates(model):
                pass
    cell = m.GRUCell(3, 4)
    with pytest.raises(ValueError, match=r"same batch size, got batch sizes \[1, 2\]"):
        with m.record_gates(cell):
            cell(x(2, 3))
            cell(x(1, 3))
    assert cell._recording is None


def test_recording_changes_no_output_or_gradient() -> None:
    model = m.GRU(3, 4, num_layers=2, bidirectional=True)
    inputs = x(5, 2, 3, requires_grad=True)
    plain, grads = run_and_backward(model, [inputs], lambda mod: mod(inputs))
    with m.record_gates(model):
        recorded, recorded_grads = run_and_backward(model, [inputs], lambda mod: mod(inputs))
    assert_same(recorded, plain)
    assert_same(recorded_grads, grads)


# --- parameter counts ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize(
    "input_size, hidden_size, num_layers, bidirectional, bias",
    [
        (3, 5, 1, False, True),
        (7, 4, 2, True, True),
        (2, 6, 3, False, False),
        (1, 1, 3, True, False),
    ],
)
def test_expected_parameters_count_real_layers(
    kind: str, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool, bias: bool
) -> None:
    config = (input_size, hidden_size, num_layers, bidirectional, bias)
    expected = m.expected_parameters(kind, *config)
    for cls in LAYERS[kind.upper()]:
        module = cls(input_size, hidden_size, num_layers, bidirectional=bidirectional, bias=bias)
        assert m.count_parameters(module) == expected
    assert m.expected_parameters(kind.upper(), *config) == expected


def test_count_parameters_trainable_only() -> None:
    model = Tagger()
    total = m.count_parameters(model, trainable_only=False)
    assert total == sum(p.numel() for p in model.parameters())
    model.encoder.requires_grad_(False)
    assert m.count_parameters(model) == total - m.expected_parameters("gru", 3, 4)
    assert m.count_parameters(model, trainable_only=False) == total
    lstm_cell = m.expected_parameters("lstm", 3, 4)
    assert (
        m.count_parameters(m.LSTMCell(3, 4)) == m.count_parameters(nn.LSTMCell(3, 4)) == lstm_cell
    )
