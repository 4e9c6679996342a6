"""Execute the book's notebooks into a folder, for measuring what repeats across machines.

Run it under the arithmetic you want to measure (the environment is the kernel's), e.g.

    OMP_NUM_THREADS=2 .venv/bin/python tests/replay/execute.py _build/replay/t2
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2 OMP_NUM_THREADS=1 \
        .venv/bin/python tests/replay/execute.py _build/replay/avx2

Each notebook runs from ``book/`` as under nbval, errors included (a failing assert does not stop
the notebook), and is written to the folder with its outputs. ``tests/replay/compare.py`` then
says which compared cells differ from the stored outputs. Nothing in ``book/`` is changed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


def execute(notebook: Path, out: Path, timeout: int) -> float:
    """Execute ``notebook`` from its own folder into ``out``; return the wall time in seconds."""
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout,
        allow_errors=True,
        resources={"metadata": {"path": str(notebook.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    nbformat.write(nb, out / notebook.name)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the executed notebooks")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every book/*.ipynb")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "book").glob("*.ipynb"))
    args.out.mkdir(parents=True, exist_ok=True)
    for notebook in notebooks:
        seconds = execute(notebook.resolve(), args.out, args.timeout)
        print(f"{notebook.name}: {seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
