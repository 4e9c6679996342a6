"""The character language model of chapters 9, 11, 12 and 13: embedding -> recurrent layer(s)
-> linear head.

    e_t = E[x_t]                         the embedding of character x_t     (N, L) -> (N, L, E)
    h_t = layer(e_t, h_{t-1})            RNN, LSTM, GRU, minGRU or minLSTM  (N, L, E) -> (N, L, H)
    a_t = W_hy h_t + b_y                 the scores of the next character   (N, L, H) -> (N, L, V)

The model is stateful: ``forward(ids, state)`` starts from ``state`` and returns the state it
ended in, so truncated BPTT carries it from one chunk to the next. Its parameters are named
``embed.*``, ``rnn.*`` and ``head.*`` (the stored checkpoints of chapter 9 use these keys), and
they are drawn in that order, so a seed gives the weights the stored sweeps started from.

Chapter 9 writes the same model out in a cell, for the reader to see whole; the scripts that
precompute its tables (and chapters 9 and 13 where they use those scripts' models) use this one.
"""

from __future__ import annotations

from typing import Any, Union

from torch import Tensor, nn

from companion._checks import check_int, describe
from companion.minrnn import MinGRU, MinLSTM

__all__ = ["LAYERS", "CharLM"]

#: The recurrent layers a ``CharLM`` builds by name: ``torch.nn``'s three and chapter 12's two.
LAYERS: dict[str, type[nn.Module]] = {
    "RNN": nn.RNN,
    "LSTM": nn.LSTM,
    "GRU": nn.GRU,
    "minGRU": MinGRU,
    "minLSTM": MinLSTM,
}

#: h of shape (layers, N, H), or the pair (h, c) of an LSTM; None means zeros.
State = Union[Tensor, tuple[Tensor, ...], None]


class CharLM(nn.Module):
    """Embedding -> recurrent layer(s) -> linear head; ``forward(ids, state) -> (scores, state)``.

    Args:
        cell: a name in :data:`LAYERS`, built batch-first with ``num_layers`` layers and
            ``layer_options`` (e.g. ``mode="sequential"`` for minGRU), or a layer built already,
            used as it is (it maps (N, L, E) to (N, L, H) unless a subclass says otherwise).
        vocab_size: V, the characters.
        embed_size: E, the features of each character's embedding.
        hidden_size: H, the features of the last layer's h_t, which the head reads.
        num_layers: stacked recurrent layers (only with a name).
        layer_options: further keyword arguments of the layer (only with a name).

    Shapes: ids (N, L) int64; scores (N, L, V); state as the layer takes and returns it (for
    ``torch.nn``'s layers h of shape (num_layers, N, H), or the pair (h, c) of an LSTM), None for
    zeros.
    """

    def __init__(
        self,
        cell: str | nn.Module,
        vocab_size: int,
        embed_size: int = 32,
        hidden_size: int = 128,
        num_layers: int = 1,
        **layer_options: Any,
    ) -> None:
        super().__init__()
        V = check_int("CharLM", "vocab_size", vocab_size)
        E = check_int("CharLM", "embed_size", embed_size)
        H = check_int("CharLM", "hidden_size", hidden_size)
        layers = check_int("CharLM", "num_layers", num_layers)
        if isinstance(cell, nn.Module) and (layers != 1 or layer_options):
            raise ValueError("CharLM: num_layers and layer options go with a layer's name only")
        if not isinstance(cell, nn.Module) and not (isinstance(cell, str) and cell in LAYERS):
            got = repr(cell) if isinstance(cell, str) else describe(cell)
            raise ValueError(f"CharLM: expected cell in {tuple(LAYERS)} or an nn.Module, got {got}")
        # Draw in this order (embedding, layer, head): the stored sweeps replay from a seed.
        self.embed = nn.Embedding(V, E)
        if isinstance(cell, nn.Module):
            self.rnn = cell
        else:
            self.rnn = LAYERS[cell](E, H, num_layers=layers, batch_first=True, **layer_options)
        self.head = nn.Linear(H, V)

    def forward(self, ids: Tensor, state: State = None) -> tuple[Tensor, State]:
        """ids (N, L) -> (scores (N, L, V), the state after the last step)."""
        out, state = self.rnn(self.embed(ids), state)  # out (N, L, H): h_t at every step
        return self.head(out), state
