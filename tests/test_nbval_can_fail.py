"""nbval is a real check: a notebook whose stored output was altered fails it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "book" / "00_setup.ipynb"


def _run_nbval(folder: Path) -> subprocess.CompletedProcess:
    # The kernel must draw figures inline as when the outputs were stored, not with the tests' Agg.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval",
            "--nbval-current-env",
            "-p",
            "no:cacheprovider",
            "--nbval-sanitize-with",
            str(ROOT / "tests" / "nbval_sanitize.cfg"),
            "-q",
            str(folder),
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _first_compared_stream(nb) -> tuple[int, dict]:
    for index, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        if cell.cell_type != "code" or "nbval-ignore-output" in tags:
            continue
        for output in cell.outputs:
            if output.output_type == "stream":
                return index, output
    raise AssertionError("the notebook has no compared stream output")


def test_nbval_passes_on_the_stored_notebook_and_fails_on_an_altered_output(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir(), bad.mkdir()
    shutil.copy(NOTEBOOK, good / NOTEBOOK.name)

    nb = nbformat.read(NOTEBOOK, as_version=4)
    index, output = _first_compared_stream(nb)
    output.text = (
        output.text.replace("cpu", "cuda") if "cpu" in output.text else output.text + "altered\n"
    )
    nbformat.write(nb, bad / NOTEBOOK.name)

    passed = _run_nbval(good)
    assert passed.returncode == 0, passed.stdout[-2000:]

    failed = _run_nbval(bad)
    assert failed.returncode == 1, failed.stdout[-2000:]
    assert "1 failed" in failed.stdout
    assert f"Cell {index}" in failed.stdout or "mismatch" in failed.stdout.lower()
