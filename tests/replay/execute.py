"""Execute the book's notebooks into a folder: to measure what repeats across machines, and to
run the book as a reader on Colab would (``--colab``).

Run it under the arithmetic you want to measure (the environment is the kernel's), e.g.

    OMP_NUM_THREADS=2 .venv/bin/python tests/replay/execute.py _build/replay/t2
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2 OMP_NUM_THREADS=1 \\
        .venv/bin/python tests/replay/execute.py _build/replay/avx2

Each notebook runs as under nbval, errors included (a failing assert does not stop the notebook),
and is written to the folder with its outputs; ``tests/replay/compare.py`` then says which
compared cells differ from the stored outputs. Nothing in ``book/`` is changed.

With ``--colab`` each notebook runs from an empty folder of its own, with a stand-in
``google.colab`` module loaded before the first cell, so that the setup cell takes its Colab
branch and pip-installs companion from this checkout's git history (``--ref``, by default the
commit of HEAD) instead of GitHub. The exit status is 1 if any cell raised.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
REPO_LINE = re.compile(r'^(\s*REPO = )"https://[^"]+"$', flags=re.M)


def _fake_colab(home: Path) -> dict[str, str]:
    """An IPython profile that imports a stand-in ``google.colab``, as Colab has it loaded."""
    package = home / "fake" / "google" / "colab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Stand-in for Colab\'s module."""\n')
    startup = home / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text(
        f"import sys\nsys.path.append({str(home / 'fake')!r})\nimport google.colab\n"
    )
    return {"IPYTHONDIR": str(home / "ipython")}


def _point_setup_cell_here(nb: nbformat.NotebookNode, ref: str) -> None:
    cell = next(c for c in nb.cells if c.cell_type == "code")
    if not REPO_LINE.search(cell.source):
        raise ValueError(f'expected a line REPO = "https://..." in the setup cell:\n{cell.source}')
    cell.source = REPO_LINE.sub(rf'\1"file://localhost{ROOT}"', cell.source)
    cell.source = cell.source.replace("@main", f"@{ref}")


def execute(notebook: Path, out: Path, timeout: int, where: Path) -> tuple[float, list[str]]:
    """Execute ``notebook`` from ``where`` into ``out``; the wall time and the cells that raised."""
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout,
        allow_errors=True,
        resources={"metadata": {"path": str(where)}},
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    nbformat.write(nb, out / notebook.name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    raised = [
        f"{notebook.name} cell {n}: {o['ename']}: {o['evalue'][:300]}"
        for n, c in enumerate(code)
        for o in c.get("outputs", [])
        if o["output_type"] == "error"
    ]
    return seconds, raised


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the executed notebooks")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every book/*.ipynb")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--colab", action="store_true", help="run as on Colab (see above)")
    parser.add_argument("--ref", help="the git commit or branch --colab installs (HEAD's commit)")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "book").glob("*.ipynb"))
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="book-run-"))
    if args.colab and not args.ref:  # pip checks out a commit or a branch, not "HEAD"
        head = ["git", "-C", str(ROOT), "rev-parse", "HEAD"]
        args.ref = subprocess.run(head, capture_output=True, text=True, check=True).stdout.strip()
    if args.colab:
        os.environ.update(_fake_colab(home))
    failures = []
    for notebook in notebooks:
        notebook = notebook.resolve()
        where = notebook.parent
        if args.colab:
            where = home / notebook.stem  # an empty working folder
            where.mkdir()
            nb = nbformat.read(notebook, as_version=4)
            _point_setup_cell_here(nb, args.ref)
            notebook = home / notebook.name
            nbformat.write(nb, notebook)
        seconds, raised = execute(notebook, args.out, args.timeout, where)
        failures += raised
        print(f"{notebook.name}: {seconds:.0f} s{'' if not raised else ', RAISED'}", flush=True)
    for line in failures:
        print(line)
    return 1 if args.colab and failures else 0


if __name__ == "__main__":
    sys.exit(main())
