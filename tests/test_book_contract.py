"""The book's structure: every notebook is in the table of contents, starts with the same setup
cell that installs companion from the repository named in _config.yml, carries its outputs and
Colab-friendly metadata."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
DISTRIBUTION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]


def _toc_files(node) -> list[str]:
    files = []
    if isinstance(node, dict):
        if "file" in node:
            files.append(node["file"])
        if "root" in node:
            files.append(node["root"])
        for value in node.values():
            files += _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            files += _toc_files(item)
    return files


def _first_code_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code")


def test_there_are_notebooks():
    assert NOTEBOOKS, "expected chapter notebooks in book/"


def test_toc_and_notebooks_agree():
    listed = set(_toc_files(TOC))
    for name in listed:
        assert any((ROOT / (name + ext)).exists() for ext in (".ipynb", ".md")), (
            f"{name} in _toc.yml has no file"
        )
    for nb in NOTEBOOKS:
        assert f"book/{nb.stem}" in listed, f"{nb.name} is not listed in _toc.yml"


def test_toc_is_a_book_with_parts():
    assert TOC["format"] == "jb-book"
    captions = [part["caption"] for part in TOC["parts"]]
    assert captions[0] == "Foundations" and captions[-1] == "Appendix"


def test_config_names_the_repository_once_and_colab():
    repo = CONFIG["repository"]
    assert repo["url"].startswith("https://github.com/") and repo["branch"] == "main"
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert CONFIG["execute"]["execute_notebooks"] == "off"


def test_every_notebook_starts_with_the_same_setup_cell():
    setups = {nb.name: _first_code_cell(nb) for nb in NOTEBOOKS}
    reference = setups[NOTEBOOKS[0].name]
    for name, source in setups.items():
        assert source == reference, f"{name}: the setup cell differs from {NOTEBOOKS[0].name}'s"


def test_the_distribution_has_a_name_of_its_own():
    # "companion" on PyPI is an unrelated project: `pip install companion` gets the wrong thing.
    assert DISTRIBUTION != "companion" and "companion" in DISTRIBUTION


def test_setup_cell_installs_from_the_configured_repository_only_on_colab():
    # Until every notebook carries the setup cell that names the distribution, this fails.
    source = _first_code_cell(NOTEBOOKS[0])
    repo = CONFIG["repository"]
    urls = re.findall(r'^\s*REPO = "(\S+)"$', source, flags=re.M)
    assert urls == [repo["url"]], (
        f"setup cell installs from {urls}, _config.yml names {repo['url']}"
    )
    # A named direct reference: pip checks that the repository builds this distribution.
    installs = re.findall(r'f"([\w.-]+) @ git\+\{REPO\}@(\w+)"', source)
    assert installs == [(DISTRIBUTION, repo["branch"])], (
        f"setup cell installs {installs}, expected {DISTRIBUTION} @ git+{{REPO}}@{repo['branch']}"
    )
    # Guard on the Colab module, not on a failed import: CI must never reach for the network.
    assert '"google.colab" in sys.modules' in source
    assert "import companion" in source, "the import name stays companion"
    assert "pick_device()" in source and "seed_everything(" in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_metadata_and_stored_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.metadata.get("accelerator") == "GPU", "Colab should offer a GPU runtime"
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells), (
        "run `make execute` and commit the outputs"
    )
    errors = [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert not errors, f"stored outputs contain an error: {errors[0]['ename'] if errors else ''}"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("present", [["python3.12"], ["python3.13", "python3.11"]])
def test_make_uses_the_first_python_from_3_11_up_and_says_which(tmp_path, present):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in present:  # stand-ins that answer --version like a Python would
        stub = bin_dir / name
        stub.write_text(f"#!/bin/sh\necho 'Python {name[6:]}.0'\n")
        stub.chmod(0o755)
    for tool in ("sh", "bash"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    run = subprocess.run(
        [shutil.which("make"), "-n", ".venv/bin/python"],
        cwd=tmp_path,
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
    )
    first = min(present)  # python3.11 before python3.13
    assert run.returncode == 0, run.stderr
    assert f"{bin_dir / first} -m venv .venv" in run.stdout


def test_make_without_a_supported_python_says_so(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("needs make")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "bash"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    run = subprocess.run(
        [shutil.which("make"), ".venv/bin/python"],
        cwd=tmp_path,
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0
    assert "no python3.11, python3.12, python3.13 or python3.14 on the PATH" in run.stderr
