"""companion.book: the chapters find the book's files in their folder, in the installed package
or in an editable install's checkout (never on the network), and import the sweep scripts
without leaving __pycache__ behind. The empty-folder run of an installed package is in
test_colab_setup.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from companion import book

ROOT = Path(__file__).resolve().parents[1]


def test_the_repository_is_the_one_config_names():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert book.REPOSITORY == config["repository"]["url"]


def test_book_file_finds_a_local_file_first(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "06_memory_sweep.csv").write_text("a,b\n")
    assert book.book_file("data/06_memory_sweep.csv", tmp_path).read_text() == "a,b\n"


def test_book_file_falls_back_to_the_book_folder_of_the_package(tmp_path):
    # An editable install has no companion/book_files/; its checkout's book/ serves.
    path = book.book_file("data/06_memory_sweep.csv", tmp_path)
    assert path.read_bytes() == (ROOT / "book" / "data" / "06_memory_sweep.csv").read_bytes()


def test_book_file_names_what_is_missing_and_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data/missing\.csv.*looked in .*Reinstall"):
        book.book_file("data/missing.csv", tmp_path)


@pytest.mark.parametrize("name", ["/etc/passwd", "../README.md", "data/../../x", ""])
def test_book_file_refuses_paths_outside_the_book(tmp_path, name):
    with pytest.raises(ValueError, match="expected a path inside the book's folder"):
        book.book_file(name, tmp_path)


def test_book_file_does_not_use_the_network():
    source = (ROOT / "companion" / "book.py").read_text()
    assert "urllib" not in source and "http" not in source.replace(book.REPOSITORY, "")


def test_load_script_imports_a_digit_named_script_without_pycache(tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "99_demo_sweep.py").write_text("ANSWER = 42\n\ndef double(x):\n    return 2 * x\n")
    try:
        module = book.load_script("demo_sweep_for_test", "scripts/99_demo_sweep.py", tmp_path)
        assert module.ANSWER == 42 and module.double(3) == 6
        assert sys.modules["demo_sweep_for_test"] is module
        assert not (scripts / "__pycache__").exists()
    finally:
        sys.modules.pop("demo_sweep_for_test", None)


def test_load_script_that_fails_leaves_no_half_module(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "98_broken.py").write_text("raise RuntimeError('broken script')\n")
    with pytest.raises(RuntimeError, match="broken script"):
        book.load_script("broken_for_test", "scripts/98_broken.py", tmp_path)
    assert "broken_for_test" not in sys.modules
