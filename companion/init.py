"""Initialisations for long memory, one function per idea, for every layer of the book.

A gated layer remembers for as long as its memory gate says "keep": the LSTM's forget gate f,
the GRU's update gate z. Starting that gate open (a positive bias) is the oldest trick for long
memories, and the book uses it from chapter 6 to chapter 12 in three forms:

- a constant, b_f or b_z = ``value`` (:func:`set_gate_bias`, Gers et al., 2000; Jozefowicz et
  al., 2015);
- the chrono initialisation, b_f = log(u) with u ~ U[1, T_max - 1] per unit (:func:`chrono_init`,
  Tallec & Ollivier, 2018), and its form for the GRU's update gate;
- for the plain RNN, which has no gate, the recurrent matrix that keeps the state's norm: the
  identity with zero biases (:func:`identity_init`, the IRNN of Le, Jaitly & Hinton, 2015) or an
  orthogonal matrix (:func:`orthogonal_recurrence`).

Every function works on ``torch.nn``'s layers and on companion's twins (their parameter names
are the same), in every layer and direction, and returns the layer. PyTorch adds ``bias_ih`` and
``bias_hh``, so a gate's whole bias goes into ``bias_ih`` and its rows of ``bias_hh`` are zeroed.
Random draws happen on the CPU in the order of the layer's parameters, so a seed gives the same
start on every device. Chapter 3 writes its own ``set_forget_bias`` by hand: there, writing it
is the lesson.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from companion._checks import check_int, check_real
from companion.models import GATE_NAMES

__all__ = [
    "BIAS_BLOCKS",
    "CHRONO_SIGNS",
    "chrono_biases",
    "chrono_init",
    "identity_init",
    "orthogonal_recurrence",
    "set_gate_bias",
]

#: The row blocks of each gated layer's (or cell's) bias, in order, named as in the equations.
#: torch.nn's classes and companion's twins share a class name and a layout.
BIAS_BLOCKS: dict[str, tuple[str, ...]] = {
    "LSTM": GATE_NAMES["lstm"],  # i, f, g, o
    "GRU": GATE_NAMES["gru"],  # r, z, n: PyTorch's z keeps the old state
    "MinGRU": ("z", "h"),  # minGRU's z writes the candidate: a negative b_z keeps
    "MinLSTM": ("f", "i", "h"),
    "SLSTM": ("i", "f", "z", "o"),
}
for _layer in ("LSTM", "GRU", "SLSTM"):
    BIAS_BLOCKS[_layer + "Cell"] = BIAS_BLOCKS[_layer]


def _rows(where: str, layer: nn.Module, gate: str) -> slice:
    """The rows of ``gate`` in ``layer``'s biases, or an error naming the layers and gates."""
    kind = type(layer).__name__
    if kind not in BIAS_BLOCKS:
        raise TypeError(
            f"{where}: expected a gated layer or cell ({', '.join(BIAS_BLOCKS)}), got {kind}"
        )
    blocks = BIAS_BLOCKS[kind]
    if gate not in blocks:
        raise ValueError(f"{where}: expected a gate of {kind} in {blocks}, got {gate!r}")
    H = layer.hidden_size
    k = blocks.index(gate)
    return slice(k * H, (k + 1) * H)


def _biases(layer: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """Every bias of ``layer`` (all layers and directions) in registration order, as (name, p)
    with the name's last part: ``bias_ih_l0``, ``bias_hh_l1_reverse``, ``bias_l0``, ``bias``."""
    for name, p in layer.named_parameters():
        last = name.rsplit(".", 1)[-1]
        if last.startswith("bias"):
            yield last, p


def set_gate_bias(layer: nn.Module, gate: str, value: float) -> nn.Module:
    """The bias of ``gate`` set to ``value`` in every layer and direction of ``layer``.

    ``gate`` is a name from :data:`BIAS_BLOCKS` (``"f"`` for the LSTM's forget gate, ``"z"``
    for the GRU's update gate, ...). The value goes into ``bias_ih`` (or the layer's one bias)
    and the gate's rows of ``bias_hh`` become 0, so that the gate's total bias is ``value``.
    Draws nothing at random. Returns ``layer``.

    Raises:
        TypeError: a layer without gates (an RNN) or of a kind not in :data:`BIAS_BLOCKS`.
        ValueError: a gate the layer does not have.
    """
    rows = _rows("set_gate_bias", layer, gate)
    value = check_real("set_gate_bias", "value", value)
    with torch.no_grad():
        for name, p in _biases(layer):
            p[rows] = 0.0 if name.startswith("bias_hh") else value
    return layer


def chrono_biases(hidden_size: int, t_max: int) -> Tensor:
    """b = log(u), u ~ U[1, t_max - 1] per unit (Tallec & Ollivier, 2018): (H,), on the CPU.

    A gate σ(b) = u / (1 + u) keeps a state for about u steps, so the units' memories span 1 to
    ``t_max`` steps. One draw of H uniforms from torch's global generator.
    """
    return torch.empty(hidden_size).uniform_(1, max(t_max - 1, 2)).log()


#: The chrono form of each gated layer: the sign with which each memory gate's rows get log(u).
#: The LSTM's forget gate keeps where it is near 1 and its input gate mirrors it; PyTorch's GRU
#: keeps where z is near 1; the minGRU's z is the fraction *written*, so its bias is -log(u); the
#: minLSTM's normalised forget gate f / (f + i) keeps about u steps with b_f = log(u), b_i = -b_f.
CHRONO_SIGNS: dict[str, dict[str, int]] = {
    "LSTM": {"i": -1, "f": +1},
    "GRU": {"z": +1},
    "MinGRU": {"z": -1},
    "MinLSTM": {"f": +1, "i": -1},
}


def chrono_init(layer: nn.Module, t_max: int) -> nn.Module:
    """The chrono initialisation, in every layer and direction of a gated layer.

    LSTM: b_f = log(u) and b_i = -b_f (Tallec & Ollivier, 2018). GRU, its chrono form: the
    update gate b_z = log(u), since PyTorch's GRU keeps the state where z is near 1 (h_t =
    (1 - z_t) n_t + z_t h_(t-1)). Chapter 12's minGRU: b_z = -log(u), since its z writes; its
    minLSTM: b_f = log(u), b_i = -b_f (see :data:`CHRONO_SIGNS`). u ~ U[1, t_max - 1], drawn once
    per layer and direction in the order of the parameters; the bias goes into ``bias_ih`` (or
    the layer's one bias) and those rows of ``bias_hh`` are 0. ``t_max`` is the longest memory
    wanted, usually T. Returns ``layer``.
    """
    kind = type(layer).__name__
    if kind not in CHRONO_SIGNS:
        raise TypeError(f"chrono_init: expected one of {', '.join(CHRONO_SIGNS)}, got {kind}")
    t_max = check_int("chrono_init", "t_max", t_max)
    H = layer.hidden_size
    signs = [(_rows("chrono_init", layer, gate), s) for gate, s in CHRONO_SIGNS[kind].items()]
    with torch.no_grad():
        for name, bias in _biases(layer):
            if name.startswith("bias_hh"):
                continue  # zeroed with its bias_ih below
            b = chrono_biases(H, t_max)
            for rows, sign in signs:
                bias[rows] = sign * b
                if name.startswith("bias_ih"):
                    getattr(layer, name.replace("bias_ih", "bias_hh"))[rows] = 0.0
    return layer


def identity_init(layer: nn.Module) -> nn.Module:
    """IRNN (Le, Jaitly & Hinton, 2015): W_hh = I and zero biases in every layer and direction.

    Meant for a ReLU RNN (``nonlinearity="relu"``): the state is then carried unchanged until
    the input moves it. Draws nothing at random. Returns ``layer``.
    """
    with torch.no_grad():
        for name, p in layer.named_parameters():
            last = name.rsplit(".", 1)[-1]
            if last.startswith("weight_hh"):
                p.copy_(torch.eye(p.shape[0]))
            elif last.startswith("bias"):
                p.zero_()
    return layer


def orthogonal_recurrence(layer: nn.Module) -> nn.Module:
    """An orthogonal W_hh in every layer and direction (norm-preserving, so a tanh RNN's state
    neither fades nor explodes at the start); the other parameters are left as they are.

    One ``nn.init.orthogonal_`` draw per W_hh, in the order of the parameters. Returns
    ``layer``.
    """
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.rsplit(".", 1)[-1].startswith("weight_hh"):
                nn.init.orthogonal_(p)
    return layer
