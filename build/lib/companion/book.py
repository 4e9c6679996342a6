"""The book's own files, for the chapters: stored sweep results and the scripts that made them.

A chapter that reads ``data/06_memory_sweep.csv`` or re-runs one point of
``scripts/06_memory_sweep.py`` writes ``book_file("data/06_memory_sweep.csv")`` and
``load_script("memory_sweep", "scripts/06_memory_sweep.py")``. The file is looked for

1. under the folder the chapter runs from (``book/`` in a clone of the repository), then
2. in the copy that ships inside the installed package (``companion/book_files/``: the
   distribution carries the book's ``data/`` and ``scripts/``, so that Colab's one install brings
   the code and the data of the same commit), then
3. in the ``book/`` folder of the checkout that an editable install points to.

Nothing is downloaded: a chapter runs the same in a clone, on Colab and in an empty folder.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path, PurePosixPath
from types import ModuleType

__all__ = ["REPOSITORY", "book_file", "load_script"]

#: The book's repository (the one ``_config.yml`` names; a test keeps the two equal).
REPOSITORY = "https://github.com/gated-rnn-book/gated-recurrent-networks"
_PACKAGED = Path(__file__).resolve().with_name("book_files")
_CHECKOUT = Path(__file__).resolve().parents[1] / "book"


def _relative(name: str) -> PurePosixPath:
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(
            f"book_file: expected a path inside the book's folder such as "
            f"'data/06_memory_sweep.csv', got {name!r}"
        )
    return relative


def book_file(name: str, root: str | Path = ".") -> Path:
    """The path of ``name``, a file of the book's folder such as ``"data/06_memory_sweep.csv"``.

    Looked up under ``root`` (the working directory: a chapter runs from ``book/``), then in the
    installed package's copy of the book's ``data/`` and ``scripts/``, then in the checkout of an
    editable install.

    Raises:
        ValueError: ``name`` is absolute or leaves the book's folder.
        FileNotFoundError: in none of those places; the message lists where it looked.
    """
    relative = _relative(name)
    places = [Path(root), _PACKAGED, _CHECKOUT]
    for place in places:
        path = place / relative
        if path.is_file():
            return path
    looked = ", ".join(str(p.resolve()) for p in places)
    raise FileNotFoundError(
        f"book_file: expected {name} in the book's folder; looked in {looked}. "
        f"Reinstall companion from the book's repository ({REPOSITORY}), whose distribution "
        f"carries the book's data/ and scripts/, or run the chapter from its book/ folder"
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
