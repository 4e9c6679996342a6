"""The gates by name: which gates each architecture has, in the order its weights stack them.

One table, read by every module that builds, initialises, records or interprets gates
(``models``, ``fused``, ``init``, ``diagnostics``, ``plots`` and the benchmarks), so that the
RNN's one block, the LSTM's four and the GRU's three are written down once. Plain Python: no
torch.
"""

from __future__ import annotations

__all__ = ["GATE_NAMES", "GATE_BLOCKS", "STATE_NAMES", "SIGMOID_GATES", "TANH_GATES"]

#: The gates each architecture records, in the order of its weight blocks (PyTorch's order).
#: diagnostics, plots and the benchmarks read gate names from here.
GATE_NAMES: dict[str, tuple[str, ...]] = {
    "rnn": (),
    "lstm": ("i", "f", "g", "o"),
    "gru": ("r", "z", "n"),
}
#: Gate blocks (rows of H) in each architecture's weights: RNN 1, LSTM 4, GRU 3. fused and the
#: benchmarks size their buffers from it.
GATE_BLOCKS: dict[str, int] = {kind: len(names) or 1 for kind, names in GATE_NAMES.items()}
#: The states each architecture records after its gates: h, and c for the LSTM.
STATE_NAMES: dict[str, tuple[str, ...]] = {"rnn": ("h",), "lstm": ("h", "c"), "gru": ("h",)}
#: Gates squashed by σ into (0, 1): LSTM input, forget, output; GRU reset and update.
SIGMOID_GATES = frozenset({"i", "f", "o", "r", "z"})
#: Gates squashed by tanh into (-1, 1): the LSTM candidate g and the GRU candidate n.
TANH_GATES = frozenset({"g", "n"})
