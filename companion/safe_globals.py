"""companion's layers in torch's weights-only loading: ``torch.load(path, weights_only=True)``.

Since torch 2.6 ``torch.load`` reads with a restricted unpickler by default: it rebuilds tensors,
containers and numbers, and any other class only if it is on the allowlist that
``torch.serialization.add_safe_globals`` keeps. A whole model saved with ``torch.save(model)``
names its classes, so a model holding ``companion.models.LSTM`` was refused ("Unsupported global:
companion.models.LSTM") where the same model with ``torch.nn.LSTM`` loads once the user allows
torch.nn's classes. ``import companion`` registers every layer class of companion here, so a
drop-in loads wherever torch.nn's layer loads.

Registering is safe because of what the classes hold: an instance's state is the state of
``torch.nn.Module`` (parameters, buffers, submodules, hooks dictionaries) plus plain ints, floats,
bools and strings; none of them defines ``__reduce__``, ``__new__`` or ``__setstate__``, so
unpickling one runs ``torch.nn.Module.__setstate__`` and no code of companion. The test
``tests/test_safe_globals.py`` loads every layer with ``weights_only=True`` in a fresh process,
which fails if any of them needed more.
"""

from __future__ import annotations

import torch
from torch import nn

from companion import fused, models

#: The classes registered: every ``nn.Module`` subclass that companion exports.
SAFE_CLASSES: tuple[type[nn.Module], ...] = (
    models.RNNCell,
    models.LSTMCell,
    models.GRUCell,
    models.RNN,
    models.LSTM,
    models.GRU,
    models.MinGRU,
    models.MinLSTM,
    models.SLSTMCell,
    models.SLSTM,
    fused.FusedLayer,
)


#: Where chapter 12's classes lived before they had modules of their own: a model saved whole
#: then names them there, and still loads.
FORMER_PATHS: dict[type[nn.Module], str] = {
    cls: f"companion.models.{cls.__name__}"
    for cls in (models.MinGRU, models.MinLSTM, models.SLSTMCell, models.SLSTM)
}


def register() -> bool:
    """Add :data:`SAFE_CLASSES` to torch's weights-only allowlist; False where the installed torch
    has no ``add_safe_globals`` (before 2.4), whose ``torch.load`` needs ``weights_only=False`` to
    read a whole model anyway."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:
        return False
    add(list(SAFE_CLASSES))
    add(list(FORMER_PATHS.items()))  # (class, path) pairs: torch >= 2.5 matches them by path
    return True
