"""companion: the models and training utilities of the book *Gated Recurrent Networks, Hands-On*.

One module per idea:

- :mod:`companion.device`: pick the device, seed every generator.
- :mod:`companion.models`: RNN, LSTM and GRU cells and layers written from their equations, drop-in
  twins of ``torch.nn``'s.
- :mod:`companion.numpy_lstm`: an LSTM in NumPy with backpropagation through time written by hand.
- :mod:`companion.fused`: an opt-in fast path, a whole layer as one autograd Function with its
  backward pass written by hand.
- :mod:`companion.benchmark`: reading the speed benchmark's results (chapter 11).
- :mod:`companion.data`: the data sets of the book, all available offline.
- :mod:`companion.download`: downloads whole and checked, or nothing; one process per folder.
- :mod:`companion.book`: the book's own files (stored sweeps, their scripts) for the chapters,
  found locally or downloaded on Colab.
- :mod:`companion.train`: a training loop with progress bars, history, TBPTT and checkpoints.
- :mod:`companion.distributed`: the same loop on several processes with ``torch.distributed``.
- :mod:`companion.diagnostics`: gradient flow, spectral radius, gate statistics.
- :mod:`companion.plots`: the book's figures.
- :mod:`companion.safe_globals`: companion's layers on torch's weights-only allowlist, registered
  on import.
"""

# First, before any import: companion.checkpoints records it in every file it writes.
__version__ = "0.1.0"

from companion import safe_globals  # noqa: E402
from companion.device import environment_summary, pick_device, seed_everything  # noqa: E402

safe_globals.register()

__all__ = ["__version__", "environment_summary", "pick_device", "seed_everything"]
