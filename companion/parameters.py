"""Parameter counts: what a module holds, and what an RNN, LSTM or GRU layer must hold.

Chapters compare models "at the same size" by these two numbers: :func:`count_parameters` counts
any module, :func:`expected_parameters` gives the closed form for a layer, and the tests hold
every twin to it.
"""

from __future__ import annotations

from torch import nn

from companion.gates import GATE_BLOCKS

__all__ = ["count_parameters", "expected_parameters"]


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """The number of scalars in ``module``'s parameters (a shared parameter counts once).

    Args:
        module: any ``nn.Module``.
        trainable_only: count only the parameters with ``requires_grad=True``.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def expected_parameters(
    kind: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    bias: bool = True,
) -> int:
    """The parameter count of an ``kind`` layer ("rnn", "lstm" or "gru"), in closed form.

    Every layer and direction has G gate blocks, each with H·(H_in + H) weights and, with bias,
    2·H biases, where G = 1 (RNN), 4 (LSTM) or 3 (GRU), H_in = input_size for layer 0 and
    D·H above it (D = 2 if bidirectional else 1).
    """
    if not isinstance(kind, str) or kind.lower() not in GATE_BLOCKS:
        raise ValueError(f"expected_parameters: expected kind 'rnn', 'lstm' or 'gru', got {kind!r}")
    g = GATE_BLOCKS[kind.lower()]
    directions = 2 if bidirectional else 1
    total = 0
    for layer in range(num_layers):
        layer_input_size = input_size if layer == 0 else directions * hidden_size
        per_direction = g * hidden_size * (layer_input_size + hidden_size)
        if bias:
            per_direction += 2 * g * hidden_size
        total += directions * per_direction
    return total
