r"""DropConnect on the recurrent weights of an LSTM: the weight drop of AWD-LSTM.

Dropout with a fresh mask on :math:`h_{t-1}` at every step injects new noise into every gate
decision, and Zaremba et al. (2014) found it hurts; so ``nn.LSTM(dropout=p)`` drops only the
connections between layers. :class:`WeightDropLSTM` regularises the recurrent connections
another way (Merity, Keskar & Socher, 2018, after Wan et al.'s DropConnect, 2013): it zeroes
entries of each layer's hidden-to-hidden matrix :math:`[W_{hi}; W_{hf}; W_{hg}; W_{ho}]` (the
``weight_hh_l{k}`` of ``nn.LSTM``, shape ``(4H, H)``), with one mask per forward call that every
time step of every sequence in the batch shares, scaled by :math:`1/(1-p)` as dropout is. The
cell state's path :math:`c_t = f_t \odot c_{t-1} + i_t \odot g_t` carries no mask, and the layer
still runs ``nn.LSTM``'s fused kernel.

In evaluation mode (``model.eval()``) nothing is dropped and the layer is ``nn.LSTM`` exactly.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F

__all__ = ["WeightDropLSTM"]


class WeightDropLSTM(nn.Module):
    """``nn.LSTM`` whose recurrent weight matrices are dropped (DropConnect) in training mode.

    Args:
        input_size, hidden_size, num_layers: as for ``torch.nn.LSTM``.
        weight_dropout: the probability :math:`p` that an entry of a ``weight_hh_l{k}`` is zeroed,
            in [0, 1); the kept entries are scaled by :math:`1/(1-p)`.
        **lstm_kwargs: passed on to ``torch.nn.LSTM`` (``batch_first``, ``dropout`` between layers,
            ``bidirectional``, ``dtype``, ...).

    The wrapped layer is the attribute ``lstm``; its parameters keep ``nn.LSTM``'s names, so a
    state dict of a plain ``nn.LSTM`` loads into ``lstm``. Shapes are ``nn.LSTM``'s: input
    (T, N, H_in), or (N, T, H_in) with ``batch_first=True``; returns ``output`` (T, N, D·H) and
    ``(h_n, c_n)``, each (num_layers·D, N, H).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        weight_dropout: float = 0.5,
        **lstm_kwargs,
    ) -> None:
        super().__init__()
        if not isinstance(weight_dropout, (int, float)) or not 0 <= weight_dropout < 1:
            raise ValueError(
                f"WeightDropLSTM: expected weight_dropout in [0, 1), got {weight_dropout!r}"
            )
        self.weight_dropout = float(weight_dropout)
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, **lstm_kwargs)
        # every layer and direction: weight_hh_l0, weight_hh_l0_reverse, weight_hh_l1, ...
        self.dropped = [name for name, _ in self.lstm.named_parameters() if "weight_hh" in name]

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Run the LSTM; in training mode with newly dropped recurrent weights (one mask a call)."""
        if not self.training or self.weight_dropout == 0:
            return self.lstm(input, hx)
        masked = {
            name: F.dropout(getattr(self.lstm, name), self.weight_dropout, training=True)
            for name in self.dropped
        }
        return functional_call(self.lstm, masked, (input, hx))

    def extra_repr(self) -> str:
        return f"weight_dropout={self.weight_dropout}"
