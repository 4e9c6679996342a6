"""companion: the models and training utilities of the book *Gated Recurrent Networks, Hands-On*.

One module per idea, each named for it, all in one flat package:

- models, by the paper or chapter that defines them: :mod:`companion.models` (the RNN, LSTM and
  GRU cells and layers, drop-in twins of ``torch.nn``'s), :mod:`companion.minrnn` (minGRU and
  minLSTM) and :mod:`companion.slstm` (the sLSTM) for chapter 12, :mod:`companion.numpy_lstm`
  (the LSTM and its BPTT in NumPy), :mod:`companion.fused` (a layer with its backward written
  by hand); :mod:`companion.init`, the initialisations for long memory they share,
  :mod:`companion.gates` (each architecture's gates by name), and :mod:`companion.char_lm`, the
  character language model (embedding, recurrent layers, head) of chapters 9 to 13;
- data: :mod:`companion.data` (every data set, offline) and :mod:`companion.download` (a file
  fetched whole and checked, or nothing); :mod:`companion.book` (the book's stored files);
- training: :mod:`companion.train` (``fit``, ``evaluate``, ``predict``), :mod:`companion.batches`
  (how a batch reaches the model), :mod:`companion.history` (what ``fit`` records),
  :mod:`companion.checkpoints`, :mod:`companion.distributed`, and :mod:`companion.sweep` (the
  process pool and CSV of the sweep scripts);
- looking at models and results: :mod:`companion.gate_recording` (every gate a forward pass
  computes), :mod:`companion.parameters` (parameter counts), :mod:`companion.diagnostics`,
  :mod:`companion.plots`; and the timings: :mod:`companion.timing` (a timed call and its
  spread), :mod:`companion.contention` (what else ran), :mod:`companion.timing_file` (the stored
  file, checked), :mod:`companion.speed_goals` (chapter 11's goals) and
  :mod:`companion.benchmark` (chapter 11's tables and figures, and all of their names);
- :mod:`companion.device` (device, seeds) and :mod:`companion.safe_globals` (weights-only
  loading of companion's layers).

Why flat, and why these cuts: a reader of a chapter opens one file and finds one idea whole,
as in nanoGPT's ``model.py`` or a labml page, and a module never holds two chapters (chapter 12's
models left ``models`` for that reason; ``models`` still re-exports them, where the chapters
import them). A module is also cut where its parts are used apart: the figures read the gate
tables without the layers, and chapter 12's scripts time runs and write timing files without
chapter 11's tables and figures, so ``gates``, ``timing``, ``contention``, ``timing_file`` and
``speed_goals`` are modules of their own (``benchmark`` re-exports the last four). A
sub-package would add nothing a name does not already say. What a reader may skip is private:
``_checks`` (argument rules), ``_layer`` (the one path that checks every layer's input and
state, and their shared initialisation) and ``_autocast`` (mixed precision across torch
versions). Imports run one way, from these foundations up to ``train``; the map and its rules
are in ``docs/ARCHITECTURE.md``, and ``tests/test_architecture.py`` holds every module to them.
"""

# First, before any import: companion.checkpoints records it in every file it writes.
__version__ = "0.1.0"

from companion import safe_globals  # noqa: E402
from companion.device import environment_summary, pick_device, seed_everything  # noqa: E402

safe_globals.register()

__all__ = ["__version__", "environment_summary", "pick_device", "seed_everything"]
