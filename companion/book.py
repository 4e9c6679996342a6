"""The book's own files, for the chapters: stored sweep results and the scripts that made them.

A chapter that reads ``data/06_memory_sweep.csv`` or re-runs one point of
``scripts/06_memory_sweep.py`` finds them in the ``book/`` folder it runs from. On Colab, which
installs companion but has no copy of the book's folders, the same call downloads the file from
the book's repository into a temporary folder. So a chapter writes
``book_file("data/06_memory_sweep.csv")`` and ``load_script("memory_sweep",
"scripts/06_memory_sweep.py")`` and runs unchanged in both places.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from companion.download import fetch

__all__ = ["REPOSITORY", "book_file", "load_script"]

#: The book's repository (the one ``_config.yml`` names; a test keeps the two equal).
REPOSITORY = "https://github.com/gated-rnn-book/gated-recurrent-networks"
_RAW = (
    REPOSITORY.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/book/"
)
_TIMEOUT = 30.0  # seconds, for the connection and every read


def book_file(name: str, root: str | Path = ".", sha256: str | None = None) -> Path:
    """The path of ``name``, a file of the book's folder such as ``"data/06_memory_sweep.csv"``.

    Looked up under ``root`` (the working directory: a chapter runs from ``book/``); on Colab,
    downloaded from the repository's main branch when it is not there, whole and checked
    against ``sha256`` when given (see :func:`companion.download.fetch`).

    Raises:
        FileNotFoundError: not under ``root``, and not on Colab.
        ConnectionError: on Colab, the download failed, timed out or was cut short.
        ValueError: on Colab, the download is not the file of that ``sha256`` (an error page).
    """
    path = Path(root) / name
    if path.exists():
        return path
    if "google.colab" not in sys.modules:
        raise FileNotFoundError(
            f"book_file: expected {name} under {Path(root).resolve()}; run the chapter from the "
            f"book/ folder of the repository ({REPOSITORY})"
        )
    target = Path(tempfile.mkdtemp()) / Path(name).name
    hint = "Place the book's folder next to the notebook instead."
    digests = {"sha256": sha256} if sha256 else None
    return fetch(
        _RAW + name, target, owner="book_file", digests=digests, timeout=_TIMEOUT, hint=hint
    )


def load_script(name: str, path: str, root: str | Path = ".") -> ModuleType:
    """Import the script ``path`` of the book's folder (e.g. ``"scripts/06_memory_sweep.py"``)
    as the module ``name``.

    Its file name starts with a digit, so a plain ``import`` cannot name it. The module is
    registered in ``sys.modules`` under ``name`` (so that ``inspect`` finds its source and a
    script that imports another finds the one already loaded), and no ``__pycache__`` is
    written into the book's folder.
    """
    spec = importlib.util.spec_from_file_location(name, book_file(path, root))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        sys.dont_write_bytecode = dont_write
    return module
