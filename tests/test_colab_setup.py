"""Colab readiness: the setup cell of every notebook, run as Colab would run it.

A fake `google.colab` module is imported first (Colab has it loaded), the repository URL in the
cell is pointed at this checkout (`git+file://localhost/...@main`: a URL with a host, which
PEP 508's named direct references need; pip really clones, builds and installs
the package from git), and pip installs into a private folder with no index and no dependencies,
so the test needs no network and leaves the venv alone. The cell must then import the freshly
installed `companion`, not the editable one, and print the device it picked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))

RUNNER = """
import google.colab  # Colab has this module loaded before the first cell runs
source = open(SETUP_PATH).read()
exec(compile(source, "setup-cell", "exec"))
print("imported from", companion.__file__)
"""


def _setup_cells() -> dict[str, list[str]]:
    cells: dict[str, list[str]] = {}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        source = next(c.source for c in nb.cells if c.cell_type == "code")
        cells.setdefault(source, []).append(path.name)
    return cells


def _git_main_exists() -> bool:
    probe = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "main"], capture_output=True
    )
    return probe.returncode == 0


SETUP_CELLS = _setup_cells()
DISTRIBUTION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]


@pytest.mark.skipif(
    not _git_main_exists(), reason="needs the repository's git history (branch main)"
)
@pytest.mark.parametrize(
    "source", list(SETUP_CELLS), ids=[names[0] for names in SETUP_CELLS.values()]
)
def test_setup_cell_installs_and_imports_companion_on_colab(tmp_path, source):
    assert re.search(r'^\s*REPO = "https://[^"]+"$', source, flags=re.M), (
        "the cell names the repository as REPO"
    )
    local = re.sub(
        r'^(\s*REPO = )"https://[^"]+"$', rf'\1"file://localhost{ROOT}"', source, flags=re.M
    )
    setup_path = tmp_path / "setup_cell.py"
    setup_path.write_text(local)
    fake = tmp_path / "fake"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "colab" / "__init__.py").write_text('"""Stand-in for Colab\'s module."""\n')
    site = tmp_path / "site"
    site.mkdir()

    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(
        PIP_TARGET=str(site),
        PIP_NO_DEPS="1",
        PIP_NO_INDEX="1",
        PIP_NO_BUILD_ISOLATION="0",
        PYTHONPATH=os.pathsep.join([str(site), str(fake)]),
        COMPANION_DEVICE="cpu",
    )
    result = subprocess.run(
        [sys.executable, "-c", f"SETUP_PATH = {str(setup_path)!r}\n{RUNNER}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (site / "companion" / "__init__.py").exists(), "pip did not install companion from git"
    assert list(site.glob(f"{DISTRIBUTION.replace('-', '_')}-*.dist-info")), "wrong distribution"
    assert f"imported from {site / 'companion' / '__init__.py'}" in result.stdout
    assert re.search(r"^companion \d+\.\d+\.\d+ on cpu$", result.stdout, flags=re.M), result.stdout


def test_outside_colab_the_setup_cell_installs_nothing(tmp_path):
    source = next(iter(SETUP_CELLS))
    # Outside Colab the install branch must not run: point it at a URL that cannot work.
    broken = re.sub(
        r'^(\s*REPO = )"https://[^"]+"$', r'\1"file:///nonexistent"', source, flags=re.M
    )
    env = {**os.environ, "COMPANION_DEVICE": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", broken],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("on cpu")


BOOK_FILES = sorted(
    p.relative_to(ROOT / "book").as_posix()
    for p in [*(ROOT / "book" / "data").iterdir(), *(ROOT / "book" / "scripts").glob("*.py")]
)
EMPTY_FOLDER_RUNNER = """
import socket, sys

def no_network(*args, **kwargs):
    raise OSError("the network was used")

socket.socket.connect = socket.create_connection = no_network
from pathlib import Path
from companion.book import book_file, load_script

for name in NAMES:
    path = book_file(name)
    assert Path(SITE) in path.resolve().parents, (name, path)
    if name.startswith("scripts/"):
        module = load_script("script_" + Path(name).stem[3:], name)
        assert module.__file__ == str(path), module.__file__
print("served", len(NAMES))
"""


@pytest.mark.skipif(
    not _git_main_exists(), reason="needs the repository's git history (branch main)"
)
def test_the_installed_package_serves_the_book_files_in_an_empty_folder(tmp_path):
    """Colab in miniature: companion installed from a git URL, an empty working folder and no
    network; every stored result and sweep script the chapters load comes from the install."""
    used = set()
    for path in NOTEBOOKS:
        text = path.read_text()
        used |= set(re.findall(r'book_file\(\\"([^"\\]+)\\"\)', text))
        used |= set(re.findall(r'load_script\(\\"\w+\\", \\"([^"\\]+)\\"\)', text))
    assert used and used <= set(BOOK_FILES), used - set(BOOK_FILES)

    site, empty = tmp_path / "site", tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    package = f"{DISTRIBUTION} @ git+file://localhost{ROOT}@main"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    install += ["--no-build-isolation"]  # setuptools from this venv: no index needed
    subprocess.run(install + ["--target", str(site), package], env=env, check=True, timeout=300)

    code = f"NAMES = {BOOK_FILES!r}\nSITE = {str(site)!r}\n{EMPTY_FOLDER_RUNNER}"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=empty,
        env={**env, "PYTHONPATH": str(site), "COMPANION_DEVICE": "cpu"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"served {len(BOOK_FILES)}" in result.stdout
    assert list(empty.iterdir()) == [], "the run wrote into the working folder"
