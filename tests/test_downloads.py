"""companion.download and the loader on it (load_imdb): a body cut short, an error
page served with status 200, archive entries that are links, out-of-range ids, and two processes
downloading into one folder. Every server is local (127.0.0.1)."""

from __future__ import annotations

import hashlib
import http.server
import io
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from companion.data import CharVocab, Vocab, load_imdb
from companion.download import fetch, folder_lock

ROOT = Path(__file__).resolve().parents[1]
REVIEWS = {
    "train/pos/0_9.txt": "A wonderful film.",
    "train/neg/0_2.txt": "Dull and slow.",
    "test/pos/0_10.txt": "Superb.",
    "test/neg/0_1.txt": "Awful.",
}


def archive_bytes(links: bool = False) -> bytes:
    """A tiny aclImdb_v1.tar.gz; with ``links``, one symbolic and one hard link as well."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in REVIEWS.items():
            payload = text.encode()
            info = tarfile.TarInfo(f"aclImdb/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        if links:
            for kind, name in [(tarfile.SYMTYPE, "passwd"), (tarfile.LNKTYPE, "hard")]:
                info = tarfile.TarInfo(f"aclImdb/train/pos/{name}.txt")
                info.type, info.linkname = kind, "/etc/passwd"
                tar.addfile(info)
    return buffer.getvalue()


ARCHIVE = archive_bytes()
PAGE = b"<html><body>Rate limit exceeded</body></html>"


class Handler(http.server.BaseHTTPRequestHandler):
    """/whole: the archive; /cut: half of it under the whole Content-Length, then the
    connection closes; /page: an HTML error page with status 200; /slow: the archive in 10
    pieces, 0.15 s apart."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = PAGE if self.path.startswith("/page") else ARCHIVE
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path.startswith("/cut"):
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if self.path.startswith("/slow"):
            step = len(body) // 10 + 1
            for k in range(0, len(body), step):
                self.wfile.write(body[k : k + step])
                self.wfile.flush()
                time.sleep(0.15)
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fetch_whole_and_checked(server, tmp_path):
    digest = hashlib.sha256(ARCHIVE).hexdigest()
    got = fetch(
        f"{server}/whole/a.tar.gz", tmp_path / "a.tar.gz", where="t", digests={"sha256": digest}
    )
    assert got.read_bytes() == ARCHIVE and leftovers(tmp_path) == ["a.tar.gz"]


def test_a_body_cut_short_is_a_connection_error_and_leaves_nothing(server, tmp_path):
    with pytest.raises(ConnectionError, match=r"load_imdb: could not download .*cut short: "):
        load_imdb(tmp_path, url=f"{server}/cut/aclImdb_v1.tar.gz", sha256=None, progress=False)
    assert leftovers(tmp_path) == []  # no .part, no archive, no lock file


def test_an_error_page_with_status_200_is_never_taken_for_the_data(server, tmp_path):
    with pytest.raises(ValueError, match="sha256 checksum mismatch .*error page"):
        load_imdb(tmp_path, url=f"{server}/page/aclImdb_v1.tar.gz", progress=False)
    assert leftovers(tmp_path) == []


def test_links_in_the_archive_are_skipped_with_a_warning(tmp_path):
    archive = tmp_path / "server" / "aclImdb_v1.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(archive_bytes(links=True))
    with pytest.warns(UserWarning, match=r"skipped 2 entries .*links.*passwd\.txt"):
        train, test = load_imdb(tmp_path / "cache", url=archive.as_uri(), sha256=None)
    assert len(train) == len(test) == 2  # the reviews, and nothing the links pointed to
    pos = tmp_path / "cache" / "aclImdb" / "train" / "pos"
    assert sorted(p.name for p in pos.iterdir()) == ["0_9.txt"]


def test_decode_refuses_negative_and_out_of_range_ids():
    chars = CharVocab("abc")
    assert chars.decode([2, 0]) == "ca"
    for bad in ([-1], [3], [0, -3]):
        with pytest.raises(IndexError, match=r"CharVocab.decode: expected ids in \[0, 3\)"):
            chars.decode(bad)
    words = Vocab.build([["a", "b"]])
    for bad in ([-1], [len(words)]):
        with pytest.raises(IndexError, match="Vocab.decode: expected ids in"):
            words.decode(bad)


LOAD = (
    "import sys, companion.data as d\n"
    "train, test = d.load_imdb(sys.argv[1], url=sys.argv[2], sha256=sys.argv[3], progress=False)\n"
    "print(len(train), len(test))\n"
)


def test_two_processes_downloading_into_one_folder_both_succeed(server, tmp_path):
    """Without the lock the second deletes the first one's partial download as a leftover."""
    args = [str(tmp_path), f"{server}/slow/aclImdb_v1.tar.gz", hashlib.sha256(ARCHIVE).hexdigest()]
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", LOAD, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    results = [run.communicate(timeout=120) for run in runs]
    for run, (out, err) in zip(runs, results):
        assert run.returncode == 0, err
        assert out.split() == ["2", "2"]
    assert sum("waiting for another process" in err for _, err in results) == 1
    assert leftovers(tmp_path) == ["aclImdb"]


def test_folder_lock_is_exclusive_and_removed_after(tmp_path):
    order = []

    def second():
        with folder_lock(tmp_path, "x", "t"):
            order.append("second")

    with folder_lock(tmp_path, "x", "t"):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first done")
    thread.join(10)
    assert order == ["first done", "second"]
    assert leftovers(tmp_path) == []
