"""What chapter 11's benchmark times: the variants of one recurrent layer, built from the weights
of a ``torch.nn`` layer so that all compute the same function, and the small character model
whose training it times.

``bench.py`` holds the plan, the timer, the suite and the command line; this file holds only
the modules they time. :func:`build_layer` makes any variant of :data:`DEVICES`; every variant
returns its output alone (:class:`OutputOnly`), which is what CUDA-graph capture and the timing
loops need. Shapes use T for the sequence length: inputs (T, N, H_in), time-major.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor, nn

from companion import char_lm, fused, models
from companion.benchmark import BASELINE, BF16, FLOAT32

__all__ = [
    "KINDS",
    "DEVICES",
    "NaiveLayer",
    "BareLayer",
    "OutputOnly",
    "CharLM",
    "build_layer",
    "precision_scope",
]

KINDS = ("LSTM", "GRU", "RNN")
#: Variants and where they can run. Compiled ones need ``--compile``.
DEVICES: dict[str, tuple[str, ...]] = {
    "torch.nn": ("cpu", "cuda", "mps"),
    "companion": ("cpu", "cuda", "mps"),
    "bare": ("cpu", "cuda", "mps"),
    "companion+fused": ("cpu", "cuda", "mps"),
    "naive": ("cpu", "cuda", "mps"),
    "companion+compile": ("cpu", "cuda"),
    "companion+cudagraphs": ("cuda",),
    "companion+compile-ro": ("cuda",),
}


def _gate_names(kind: str) -> tuple[str, ...]:
    return models.GATE_NAMES[kind.lower()] or ("h",)  # the RNN's one block is named after h


class NaiveLayer(nn.Module):
    """A one-layer RNN/LSTM/GRU written gate by gate, as chapter 11 writes it first.

    Every gate has its own ``W_x*`` (H, H_in) and ``W_h*`` (H, H) and makes two matmuls per step
    (eight per step for the LSTM), and the loop reads ``x[t]``. Built from a ``torch.nn`` or
    companion layer's weights, it computes the same function; bias per gate
    ``b_* = b_x* + b_h*`` except the GRU's candidate, which keeps ``b_xn`` and ``b_hn`` apart as
    equation (5.3) needs.

    Input (T, N, H_in); returns ``(output (T, N, H), state)`` like ``torch.nn``'s layers.
    """

    def __init__(self, kind: str, source: nn.Module) -> None:
        super().__init__()
        if kind.lower() not in models.GATE_BLOCKS:
            raise ValueError(f"NaiveLayer: expected kind in {KINDS}, got {kind!r}")
        if source.num_layers != 1 or source.bidirectional or source.batch_first or not source.bias:
            raise ValueError(
                "NaiveLayer: expected a one-layer, one-direction, time-major layer with biases"
            )
        self.kind = kind
        self.hidden_size = hidden = source.hidden_size
        w_ih, w_hh = source.weight_ih_l0.detach(), source.weight_hh_l0.detach()
        b_ih, b_hh = source.bias_ih_l0.detach(), source.bias_hh_l0.detach()
        for k, name in enumerate(_gate_names(kind)):
            rows = slice(k * hidden, (k + 1) * hidden)
            self.register_parameter(f"W_x{name}", nn.Parameter(w_ih[rows].clone()))
            self.register_parameter(f"W_h{name}", nn.Parameter(w_hh[rows].clone()))
            if kind == "GRU" and name == "n":
                self.b_xn = nn.Parameter(b_ih[rows].clone())
                self.b_hn = nn.Parameter(b_hh[rows].clone())
            else:
                self.register_parameter(f"b_{name}", nn.Parameter(b_ih[rows] + b_hh[rows]))

    def forward(self, x: Tensor) -> tuple[Tensor, Any]:
        h = x.new_zeros(x.size(1), self.hidden_size)
        c = torch.zeros_like(h)
        outputs = []
        for t in range(x.size(0)):
            if self.kind == "LSTM":
                i = torch.sigmoid(x[t] @ self.W_xi.T + h @ self.W_hi.T + self.b_i)
                f = torch.sigmoid(x[t] @ self.W_xf.T + h @ self.W_hf.T + self.b_f)
                g = torch.tanh(x[t] @ self.W_xg.T + h @ self.W_hg.T + self.b_g)
                o = torch.sigmoid(x[t] @ self.W_xo.T + h @ self.W_ho.T + self.b_o)
                c = f * c + i * g
                h = o * torch.tanh(c)
            elif self.kind == "GRU":
                r = torch.sigmoid(x[t] @ self.W_xr.T + h @ self.W_hr.T + self.b_r)
                z = torch.sigmoid(x[t] @ self.W_xz.T + h @ self.W_hz.T + self.b_z)
                n = torch.tanh(x[t] @ self.W_xn.T + self.b_xn + r * (h @ self.W_hn.T + self.b_hn))
                h = (1 - z) * n + z * h
            else:
                h = torch.tanh(x[t] @ self.W_xh.T + h @ self.W_hh.T + self.b_h)
            outputs.append(h)
        state = (h[None], c[None]) if self.kind == "LSTM" else h[None]
        return torch.stack(outputs), state


class BareLayer(nn.Module):
    """The operations ``companion.models`` makes for one layer, and nothing else.

    The input projection of all steps in one product, then per step one ``addmm``, ``chunk``
    and the gates' element-wise operations, exactly as ``lstm_step``, ``gru_step`` and
    ``rnn_step`` make them, written inline in one loop: no step function, no state tuples, no
    checks, no gate recording (:func:`companion.models.record_gates`). Autograd still builds its
    graph of every operation, as it does for the readable layer, so its time is the floor for
    that layer's design: what the operations themselves cost, dispatched one by one.

    Input (T, N, H_in); returns ``(output (T, N, H), h_n)`` (the LSTM's c_n is left out).
    """

    def __init__(self, kind: str, source: nn.Module) -> None:
        super().__init__()
        self.kind = kind
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            self.register_parameter(
                name, nn.Parameter(getattr(source, f"{name}_l0").detach().clone())
            )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        w_hh_T = self.weight_hh.T
        b = self.bias_ih if self.kind == "GRU" else self.bias_ih + self.bias_hh
        xw = (x @ self.weight_ih.T + b).unbind(0)
        h = x.new_zeros(x.size(1), self.weight_hh.size(1))
        c = torch.zeros_like(h)
        outputs = []
        for xw_t in xw:
            if self.kind == "LSTM":
                i, f, g, o = torch.addmm(xw_t, h, w_hh_T).chunk(4, dim=-1)
                i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
                c = f * c + i * g
                h = o * torch.tanh(c)
            elif self.kind == "GRU":
                h_r, h_z, h_n = torch.addmm(self.bias_hh, h, w_hh_T).chunk(3, dim=-1)
                x_r, x_z, x_n = xw_t.chunk(3, dim=-1)
                r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
                n = torch.tanh(x_n + r * h_n)
                h = torch.lerp(n, h, z)
            else:
                h = torch.tanh(torch.addmm(xw_t, h, w_hh_T))
            outputs.append(h)
        return torch.stack(outputs), h


class OutputOnly(nn.Module):
    """A layer that returns only its output (T, N, H): what CUDA-graph capture and the timing
    loops need."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)[0]


def precision_scope(device: torch.device, precision: str, cache_enabled: bool = True):
    """The autocast that ``precision`` ("float32" or "bf16-autocast") asks for on ``device``."""
    if precision == FLOAT32:
        return contextlib.nullcontext()
    if precision == BF16:
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled)
    raise ValueError(f"expected precision {FLOAT32!r} or {BF16!r}, got {precision!r}")


def build_layer(
    variant: str,
    kind: str,
    reference: nn.Module,
    sample: Tensor,
    precision: str = FLOAT32,
    compile_backend: str = "inductor",
) -> nn.Module:
    """A module computing ``reference``'s function as ``variant`` does; it returns the output only.

    Args:
        variant: a key of :data:`DEVICES`.
        kind: "RNN", "LSTM" or "GRU".
        reference: the ``torch.nn`` layer whose weights every variant copies (on the device).
        sample: an input like the ones to come (T, N, H_in); CUDA-graph capture replays its
            shape and its ``requires_grad``.
        precision: ``"float32"`` or ``"bf16-autocast"`` (matters for CUDA-graph capture).
        compile_backend: ``torch.compile``'s backend; the tests use "eager" to skip inductor.
    """
    if variant == BASELINE:
        return OutputOnly(reference)
    if variant == "naive":
        return OutputOnly(NaiveLayer(kind, reference))
    if variant == "bare":
        return OutputOnly(BareLayer(kind, reference))
    ours = getattr(models, kind)(reference.input_size, reference.hidden_size).to(sample.device)
    ours.load_state_dict(reference.state_dict())
    layer = OutputOnly(ours)
    if variant == "companion":
        return layer
    if variant == "companion+fused":
        return OutputOnly(fused.fuse(ours))
    # torch.compile refuses a mode together with a backend other than its default
    backend = {} if compile_backend == "inductor" else {"backend": compile_backend}
    if variant == "companion+compile":
        return torch.compile(layer, **backend)
    if variant == "companion+compile-ro":
        return torch.compile(layer, mode="reduce-overhead", **backend)
    if variant == "companion+cudagraphs":
        if sample.device.type != "cuda":
            raise RuntimeError("companion+cudagraphs: CUDA graphs need a CUDA device")
        # Capture under the same autocast as the replays; autocast's weight cache must be off.
        with precision_scope(sample.device, precision, cache_enabled=False):
            return torch.cuda.make_graphed_callables(layer, (sample,))
    raise ValueError(f"build_layer: expected a variant in {tuple(DEVICES)}, got {variant!r}")


class CharLM(char_lm.CharLM):
    """:class:`companion.char_lm.CharLM` around a layer built already, time-major and stateless.

    ``layer`` maps (T, N, E) to (T, N, H) (an :class:`OutputOnly` or a graphed one), the form
    every timed variant takes, so the model reads time-major inside and returns no state.
    Input ids (N, T) -> logits (N, T, V).
    """

    def __init__(self, layer: nn.Module, vocab: int, embedding: int, hidden: int) -> None:
        super().__init__(layer, vocab, embedding, hidden)

    def forward(self, ids: Tensor) -> Tensor:  # type: ignore[override]
        e = self.embed(ids.t())  # time-major inside, as the layers expect
        return self.head(self.rnn(e)).transpose(0, 1)
