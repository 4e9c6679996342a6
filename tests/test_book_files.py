"""companion.book: the chapters find the book's files locally, download them on Colab (with a
timeout and a clear error), and import the sweep scripts without leaving __pycache__ behind."""

from __future__ import annotations

import http.server
import sys
import threading
import types
from pathlib import Path

import pytest
import yaml

from companion import book

ROOT = Path(__file__).resolve().parents[1]


def test_the_repository_is_the_one_config_names():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert book.REPOSITORY == config["repository"]["url"]
    assert book._RAW.endswith("/gated-rnn-book/gated-recurrent-networks/main/book/")


def test_book_file_finds_a_local_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("a,b\n")
    assert book.book_file("data/x.csv", tmp_path).read_text() == "a,b\n"


def test_book_file_outside_colab_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    with pytest.raises(FileNotFoundError, match=r"expected data/missing\.csv under .*book/"):
        book.book_file("data/missing.csv", tmp_path)


@pytest.fixture
def on_colab(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over tmp_path/served, in place of the repository's raw files."""
    served = tmp_path / "served"
    (served / "data").mkdir(parents=True)
    (served / "data" / "y.csv").write_text("1,2\n")

    def handler(*args, **kwargs):
        return http.server.SimpleHTTPRequestHandler(*args, directory=str(served), **kwargs)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_book_file_downloads_on_colab(tmp_path, on_colab, server, monkeypatch):
    monkeypatch.setattr(book, "_RAW", server)
    path = book.book_file("data/y.csv", tmp_path / "empty")
    assert path.read_text() == "1,2\n" and path.name == "y.csv"


def test_book_file_on_colab_without_the_file_is_a_clear_error(
    tmp_path, on_colab, server, monkeypatch
):
    monkeypatch.setattr(book, "_RAW", server)
    with pytest.raises(ConnectionError, match=r"could not download .*data/nope\.csv"):
        book.book_file("data/nope.csv", tmp_path)


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
