"""Tests of companion.data: shapes, dtypes, determinism, error messages, and the IMDB downloader
run against a small local archive served through a file:// URL (no network)."""

from __future__ import annotations

import hashlib
import io
import math
import re
import socket
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from companion import data
from companion.data import (
    NEGATIVE_WORDS,
    POSITIVE_WORDS,
    CharVocab,
    Vocab,
    adding_problem,
    char_corpus,
    collate_for_packing,
    lm_batches,
    load_imdb,
    load_sunspots,
    make_windows,
    multiplication_problem,
    pad_batch,
    sine_waves,
    split_by_time,
    synthetic_reviews,
    tokenize,
)

# ---------------------------------------------------------------------------------------------
# Adding and multiplication problems
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", [adding_problem, multiplication_problem])
def test_marker_task_shapes_and_markers(task):
    x, y = task(64, 30, seed=0)
    assert x.shape == (64, 30, 2) and y.shape == (64, 1)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(markers.unique().tolist()) <= {0.0, 1.0}
    assert (markers.sum(1) == 2).all()
    # One marker in each half.
    assert (markers[:, :15].sum(1) == 1).all() and (markers[:, 15:].sum(1) == 1).all()


def test_adding_and_multiplication_targets():
    x, y = adding_problem(50, 20, seed=1)
    marked = x[..., 0] * x[..., 1]
    torch.testing.assert_close(y[:, 0], marked.sum(1))
    x, y = multiplication_problem(50, 20, seed=1)
    picked = x[..., 0][x[..., 1] == 1].view(50, 2)
    torch.testing.assert_close(y[:, 0], picked.prod(1))


def test_marker_task_seed_and_global_state():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = adding_problem(8, 10, seed=5)
    b = adding_problem(8, 10, seed=5)
    c = adding_problem(8, 10, seed=6)
    assert torch.equal(before, torch.get_rng_state()), "must not touch the global generator"
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    # seed=None gives fresh data rather than a fixed default sequence.
    assert not torch.equal(adding_problem(8, 10)[0], adding_problem(8, 10)[0])


def test_marker_task_shortest_length():
    x, _ = adding_problem(5, 2, seed=0)
    assert torch.equal(x[..., 1], torch.ones(5, 2))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n": 0}, ValueError, r"expected n .* >= 1, got 0"),
        ({"n": 4, "length": 1}, ValueError, r"expected length .* >= 2, got 1"),
        ({"n": 2.5}, TypeError, r"expected an int n .* got float"),
        ({"n": True}, TypeError, r"expected an int n"),
        ({"n": 3, "seed": -1}, ValueError, r"expected seed >= 0, got -1"),
    ],
)
def test_marker_task_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        adding_problem(**kwargs)


# ---------------------------------------------------------------------------------------------
# Time series
# ---------------------------------------------------------------------------------------------


def test_sine_waves_shape_period_and_seed():
    waves = sine_waves(6, 200, period=20, seed=0)
    assert waves.shape == (6, 200) and waves.dtype == torch.float32
    assert waves.abs().max() <= 1.0
    torch.testing.assert_close(waves[:, 20:], waves[:, :-20], atol=1e-5, rtol=0)
    # Half a period later the wave has the opposite sign.
    torch.testing.assert_close(waves[:, 10:], -waves[:, :-10], atol=1e-5, rtol=0)
    assert torch.equal(waves, sine_waves(6, 200, period=20, seed=0))
    assert not torch.equal(waves, sine_waves(6, 200, period=20, seed=1))


def test_sine_waves_fractional_period_and_errors():
    waves = sine_waves(2, 50, period=7.5, seed=0)
    torch.testing.assert_close(waves[:, 15:], waves[:, :-15], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="positive period"):
        sine_waves(2, 10, period=0)
    with pytest.raises(ValueError, match=r"expected length >= 1, got 0"):
        sine_waves(2, 0)


@pytest.mark.parametrize("kind", ["numpy", "tensor", "list"])
def test_make_windows_values(kind):
    raw = np.arange(10, dtype=np.float64)
    series = {"numpy": raw, "tensor": torch.as_tensor(raw), "list": raw.tolist()}[kind]
    x, y = make_windows(series, input_length=3, horizon=2)
    assert x.shape == (6, 3, 1) and y.shape == (6, 2)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    assert x[0, :, 0].tolist() == [0, 1, 2] and y[0].tolist() == [3, 4]
    assert x[-1, :, 0].tolist() == [5, 6, 7] and y[-1].tolist() == [8, 9]


@settings(max_examples=30, deadline=None)
@given(
    length=st.integers(1, 40),
    input_length=st.integers(1, 10),
    horizon=st.integers(1, 5),
)
def test_make_windows_property(length, input_length, horizon):
    series = torch.arange(length, dtype=torch.float32)
    if length < input_length + horizon:
        with pytest.raises(ValueError, match="the series has only"):
            make_windows(series, input_length, horizon)
        return
    x, y = make_windows(series, input_length, horizon)
    assert x.shape == (length - input_length - horizon + 1, input_length, 1)
    # Each target continues its input window with no gap.
    torch.testing.assert_close(y[:, 0], x[:, -1, 0] + 1)


def test_make_windows_errors():
    message = r"input_length \+ horizon = 8 \+ 3 = 11 values, but the series has only 10"
    with pytest.raises(ValueError, match=message):
        make_windows(np.zeros(10), 8, 3)
    with pytest.raises(ValueError, match=r"expected a 1-D series of shape \(T,\), got shape \(5,"):
        make_windows(np.zeros((5, 2)), 2)
    with pytest.raises(ValueError, match=r"expected horizon >= 1, got 0"):
        make_windows(np.zeros(10), 2, 0)


def test_split_by_time_contiguous():
    series = np.arange(100)
    train, val, test = split_by_time(series)
    assert (len(train), len(val), len(test)) == (70, 15, 15)
    assert np.array_equal(np.concatenate([train, val, test]), series)
    t_train, t_val, t_test = split_by_time(torch.arange(20).view(10, 2), 0.6, 0.2)
    assert isinstance(t_train, torch.Tensor) and t_train.shape == (6, 2)
    assert t_val[0, 0] == 12 and t_test[-1, -1] == 19
    _, empty_val, test = split_by_time(series, 0.8, 0.0)
    assert len(empty_val) == 0 and len(test) == 20


def test_split_by_time_errors():
    with pytest.raises(ValueError, match=r"expected 0 < train < 1, got train=1.2"):
        split_by_time(np.arange(10), 1.2)
    with pytest.raises(ValueError, match=r"train \+ val < 1"):
        split_by_time(np.arange(10), 0.7, 0.3)
    with pytest.raises(ValueError, match=r"every requested part needs at least 1"):
        split_by_time(np.arange(3), 0.5, 0.1)


def test_load_sunspots():
    years, counts = load_sunspots()
    assert years.shape == counts.shape == (309,)
    assert years.dtype == np.int64 and counts.dtype == np.float64
    assert years[0] == 1700 and years[-1] == 2008
    assert np.array_equal(np.diff(years), np.ones(308, dtype=np.int64))
    assert counts[0] == 5.0 and counts.min() >= 0 and 150 < counts.max() < 200
    readme = Path(data.__file__).parent / "datasets" / "README.md"
    assert "public domain" in readme.read_text(encoding="utf-8").lower()


# ---------------------------------------------------------------------------------------------
# Sentiment
# ---------------------------------------------------------------------------------------------


def test_synthetic_reviews_structure():
    reviews = synthetic_reviews(101, length=12, distance=4, seed=0)
    assert len(reviews) == 101
    labels = [label for _, label in reviews]
    assert labels.count(0) == 50 and labels.count(1) == 51
    sentiment = set(POSITIVE_WORDS) | set(NEGATIVE_WORDS)
    for tokens, label in reviews:
        assert len(tokens) == 12
        word = tokens[12 - 1 - 4]
        assert word in (POSITIVE_WORDS if label else NEGATIVE_WORDS)
        # Only the deciding position carries sentiment.
        assert [t in sentiment for t in tokens].count(True) == 1
    assert synthetic_reviews(101, length=12, distance=4, seed=0) == reviews


def test_synthetic_reviews_filler_independent_of_label():
    reviews = synthetic_reviews(4000, length=(5, 9), distance=2, seed=1)
    # Remove the deciding word: what is left must not predict the label.
    lengths = {0: [], 1: []}
    counts = {0: np.zeros(len(data.FILLER_WORDS)), 1: np.zeros(len(data.FILLER_WORDS))}
    index = {w: i for i, w in enumerate(data.FILLER_WORDS)}
    for tokens, label in reviews:
        lengths[label].append(len(tokens))
        filler = tokens[: len(tokens) - 3] + tokens[len(tokens) - 2 :]
        for t in filler:
            counts[label][index[t]] += 1
    assert set(lengths[0]) == set(lengths[1]) == {5, 6, 7, 8, 9}
    assert abs(np.mean(lengths[0]) - np.mean(lengths[1])) < 0.15
    p0, p1 = counts[0] / counts[0].sum(), counts[1] / counts[1].sum()
    assert np.abs(p0 - p1).max() < 0.01


def test_synthetic_reviews_errors():
    with pytest.raises(ValueError, match=r"distance < length .* got distance=5 with length=5"):
        synthetic_reviews(10, length=5, distance=5)
    with pytest.raises(ValueError, match=r"expected length high >= 6, got 4"):
        synthetic_reviews(10, length=(6, 4))
    with pytest.raises(ValueError, match=r"expected n .* >= 2, got 1"):
        synthetic_reviews(1)


def test_tokenize():
    assert tokenize("Not bad.<br /><br />It's GREAT!") == ["not", "bad", ".", "it's", "great", "!"]


def test_vocab_build_encode_decode():
    vocab = Vocab.build([["b", "a", "a"], ["c", "a", "b"], "C d"], min_freq=2)
    assert vocab.itos == ["<pad>", "<unk>", "a", "b", "c"]
    assert len(vocab) == 5 and "a" in vocab and "d" not in vocab
    assert vocab["zzz"] == Vocab.UNK and vocab["<pad>"] == Vocab.PAD == 0
    ids = vocab.encode(["a", "d", "c"])
    assert ids.dtype == torch.long and ids.tolist() == [2, 1, 4]
    assert vocab.decode(torch.tensor([2, 4, 0, 0])) == ["a", "c"]
    assert vocab.decode([2, 0], skip_pad=False) == ["a", "<pad>"]
    assert len(Vocab.build([["a", "b", "c"]], max_size=2)) == 4
    with pytest.raises(IndexError, match=r"expected ids in \[0, 5\), got 9"):
        vocab.decode([9])


def test_pad_batch():
    padded, lengths = pad_batch([[3, 4, 5], torch.tensor([6]), [7, 8]])
    assert padded.dtype == torch.long and lengths.dtype == torch.long
    assert lengths.device.type == "cpu"
    assert padded.tolist() == [[3, 4, 5], [6, 0, 0], [7, 8, 0]]
    assert lengths.tolist() == [3, 1, 2]
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        pad_batch([[1], []])
    with pytest.raises(ValueError, match="empty batch"):
        pad_batch([])


def test_collate_for_packing_with_lstm():
    reviews = synthetic_reviews(6, length=(3, 8), seed=2)
    vocab = Vocab.build(tokens for tokens, _ in reviews)
    batch = [(vocab.encode(tokens), label) for tokens, label in reviews]
    padded, lengths, labels = collate_for_packing(batch)
    assert padded.shape == (6, int(lengths.max())) and labels.dtype == torch.long
    assert labels.tolist() == [label for _, label in reviews]  # order kept, not sorted
    embedding = torch.nn.Embedding(len(vocab), 4, padding_idx=Vocab.PAD)
    lstm = torch.nn.LSTM(4, 5, batch_first=True)
    packed = pack_padded_sequence(
        embedding(padded), lengths, batch_first=True, enforce_sorted=False
    )
    out, (h_n, _) = lstm(packed)
    unpacked, out_lengths = pad_packed_sequence(out, batch_first=True)
    assert torch.equal(out_lengths, lengths)
    # h_n is each sequence's state at its own last real token, not at the padding.
    rows = torch.arange(6)
    torch.testing.assert_close(h_n[0], unpacked[rows, lengths - 1])
    with pytest.raises(ValueError, match=r"expected a batch of \(ids, label\) pairs"):
        collate_for_packing([[1, 2, 3]])


# ---------------------------------------------------------------------------------------------
# IMDB downloader, on a fake archive
# ---------------------------------------------------------------------------------------------

FAKE_REVIEWS = {
    "train/pos/0_9.txt": "A wonderful film.<br />Loved it.",
    "train/pos/1_8.txt": "Great acting.",
    "train/neg/0_2.txt": "Dull and slow.",
    "test/pos/0_10.txt": "Superb.",
    "test/neg/0_1.txt": "Awful, simply awful.",
    "test/neg/1_3.txt": "Not good at all.",
    "train/unsup/0_0.txt": "ignored",
}


@pytest.fixture()
def fake_imdb(tmp_path):
    """A tiny aclImdb_v1.tar.gz; returns (file:// url, sha256 hex digest)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in FAKE_REVIEWS.items():
            payload = text.encode("utf-8")
            info = tarfile.TarInfo(f"aclImdb/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    archive = tmp_path / "server" / "aclImdb_v1.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(buffer.getvalue())
    return archive.as_uri(), hashlib.sha256(buffer.getvalue()).hexdigest()


def test_load_imdb_downloads_parses_and_caches(tmp_path, fake_imdb):
    url, digest = fake_imdb
    root = tmp_path / "cache"
    train, test = load_imdb(root, url=url, sha256=digest, progress=False)
    assert train == [
        ("Dull and slow.", 0),
        ("A wonderful film.<br />Loved it.", 1),
        ("Great acting.", 1),
    ]
    assert sorted(label for _, label in test) == [0, 0, 1] and len(test) == 3
    # Only the extracted folder stays: no archive, no temporary files.
    assert sorted(p.name for p in root.iterdir()) == ["aclImdb"]
    # Cached: a second call needs neither the URL nor the network.
    again = load_imdb(root, url="file:///nonexistent/aclImdb_v1.tar.gz", sha256="0" * 64)
    assert again == (train, test)
    assert load_imdb(root, download=False) == (train, test)


def test_load_imdb_md5_fallback(tmp_path, fake_imdb):
    url, _ = fake_imdb
    md5 = hashlib.md5(Path(url[len("file://") :]).read_bytes()).hexdigest()
    train, _ = load_imdb(tmp_path / "cache", url=url, sha256=None, md5=md5, progress=False)
    assert len(train) == 3


def test_load_imdb_bad_checksum_leaves_nothing(tmp_path, fake_imdb):
    url, digest = fake_imdb
    root = tmp_path / "cache"
    message = rf"sha256 checksum mismatch .* expected {'f' * 64}, got {digest}"
    with pytest.raises(ValueError, match=message):
        load_imdb(root, url=url, sha256="f" * 64, progress=False)
    assert list(root.iterdir()) == []


def test_load_imdb_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no IMDB data in .*download=True"):
        load_imdb(tmp_path, download=False)


def test_load_imdb_uses_archive_placed_by_hand(tmp_path, fake_imdb):
    url, digest = fake_imdb
    root = tmp_path / "cache"
    root.mkdir()
    (root / "aclImdb_v1.tar.gz").write_bytes(Path(url[len("file://") :]).read_bytes())
    train, test = load_imdb(root, download=False, sha256=digest)
    assert len(train) == 3 and len(test) == 3


def test_imdb_constants():
    assert data.IMDB_URL.endswith("/aclImdb_v1.tar.gz")
    assert len(data.IMDB_SHA256) == 64 and len(data.IMDB_MD5) == 32


# ---------------------------------------------------------------------------------------------
# Characters
# ---------------------------------------------------------------------------------------------


def test_char_corpus_is_deterministic_ascii():
    text = char_corpus()
    assert len(text) > 100_000
    assert text == char_corpus()
    assert all(ch == "\n" or " " <= ch <= "~" for ch in set(text))
    assert char_corpus(max_chars=500) == text[:500]
    assert "the" in text and "def" in text


def test_char_vocab_round_trip():
    text = char_corpus(max_chars=5000)
    vocab = CharVocab(text)
    assert len(vocab) == len(set(text)) and vocab.chars == sorted(vocab.chars)
    ids = vocab.encode(text)
    assert ids.dtype == torch.long and ids.shape == (5000,)
    assert vocab.decode(ids) == text
    with pytest.raises(ValueError, match=r"character '\\x00' is not in the vocabulary"):
        vocab.encode("\x00")
    with pytest.raises(ValueError, match="non-empty str"):
        CharVocab("")


def test_lm_batches_shapes_targets_and_continuity():
    ids = torch.arange(103)
    batches = lm_batches(ids, batch_size=4, bptt=5)
    # 103 // 4 = 25 ids per row, (25 - 1) // 5 = 4 batches.
    assert len(batches) == 4 and len(list(batches)) == 4  # re-iterable
    items = list(batches)
    for x, y in items:
        assert x.shape == y.shape == (4, 5) and x.dtype == y.dtype == torch.long
        assert torch.equal(y[:, :-1], x[:, 1:])
    for (x, y), (x_next, _) in zip(items, items[1:]):
        # Row r of batch k + 1 continues row r of batch k.
        assert torch.equal(x_next[:, 0], x[:, -1] + 1)
        assert torch.equal(x_next[:, 0], y[:, -1])
    # Each row is one contiguous stretch of the stream, row r + 1 following row r.
    assert items[0][0][:, 0].tolist() == [0, 25, 50, 75]
    assert torch.equal(batches[-1][0], items[-1][0])


def test_lm_batches_errors():
    with pytest.raises(ValueError, match=r"give 2 ids per row, but one batch needs bptt \+ 1 = 6"):
        lm_batches(torch.arange(10), batch_size=4, bptt=5)
    with pytest.raises(ValueError, match=r"expected a 1-D integer tensor .* got shape \(2, 5\)"):
        lm_batches(torch.zeros(2, 5, dtype=torch.long), 1, 2)
    with pytest.raises(ValueError, match="dtype torch.float32"):
        lm_batches(torch.zeros(10), 1, 2)
    with pytest.raises(TypeError, match="expected ids as a LongTensor"):
        lm_batches(list(range(10)), 1, 2)


def test_lm_batches_on_corpus():
    text = char_corpus(max_chars=2000)
    vocab = CharVocab(text)
    x, y = next(iter(lm_batches(vocab.encode(text), batch_size=2, bptt=30)))
    assert vocab.decode(x[0, 1:]) == vocab.decode(y[0, :-1])
    assert vocab.decode(x[0]) == text[:30]
    assert math.isclose(len(vocab.decode(x)), 60)


def test_load_imdb_rejects_archive_without_reviews(tmp_path, capsys):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("something/else.txt")
        tar.addfile(info, io.BytesIO(b""))
    archive = tmp_path / "aclImdb_v1.tar.gz"
    archive.write_bytes(buffer.getvalue())
    root = tmp_path / "cache"
    message = r"to contain aclImdb/\{train,test\}/\{pos,neg\}/, got .*'something'"
    with pytest.raises(ValueError, match=message):
        load_imdb(root, url=archive.as_uri(), sha256=None, progress=True)
    assert "Downloading aclImdb_v1.tar.gz" in capsys.readouterr().err  # the tqdm bar
    # The staging folder is gone; only the verified archive stays for the next attempt.
    assert [p.name for p in root.iterdir()] == ["aclImdb_v1.tar.gz"]


# ---------------------------------------------------------------------------------------------
# IMDB downloader: servers that never answer, no network, leftovers of a killed run
# ---------------------------------------------------------------------------------------------


def test_load_imdb_times_out_on_a_server_that_never_answers(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # the kernel accepts the connection; nobody ever reads or answers
    url = f"http://127.0.0.1:{server.getsockname()[1]}/aclImdb_v1.tar.gz"
    start = time.monotonic()
    try:
        with pytest.raises(
            ConnectionError, match=r"could not download .*127\.0\.0\.1.*timeout 0\.5"
        ):
            load_imdb(tmp_path, url=url, progress=False, timeout=0.5)
    finally:
        server.close()
    assert time.monotonic() - start < 10
    assert list(tmp_path.iterdir()) == []  # no .part file stays behind


def test_load_imdb_offline_names_the_url_and_where_to_put_the_file(tmp_path):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now: the connection is refused
    url = f"http://127.0.0.1:{port}/aclImdb_v1.tar.gz"
    placed = str(tmp_path / "aclImdb_v1.tar.gz")
    with pytest.raises(
        ConnectionError, match=rf"{re.escape(url)}.*place it at {re.escape(placed)}"
    ):
        load_imdb(tmp_path, url=url, progress=False, timeout=5)


def test_load_imdb_cleans_up_after_a_killed_run(tmp_path, fake_imdb):
    url, digest = fake_imdb
    root = tmp_path / "cache"
    root.mkdir()
    (root / ".aclImdb_v1.tar.gz.x1y2.part").write_bytes(b"half a download")
    half = root / ".aclImdb-extract-abc" / "aclImdb" / "train" / "pos"
    half.mkdir(parents=True)
    (half / "0_9.txt").write_text("half an extraction")
    train, _ = load_imdb(root, url=url, sha256=digest, progress=False)
    assert len(train) == 3
    assert sorted(p.name for p in root.iterdir()) == ["aclImdb"]
    assert (root / "aclImdb" / ".complete").is_file()


def test_a_folder_with_one_review_is_never_returned_as_data(tmp_path):
    for split, name in [("train", "neg"), ("train", "pos"), ("test", "neg"), ("test", "pos")]:
        (tmp_path / "aclImdb" / split / name).mkdir(parents=True)
    (tmp_path / "aclImdb" / "train" / "pos" / "0_9.txt").write_text("The only review.")
    message = r"incomplete: it holds 1 of 50,000 reviews .*\[0, 1, 0, 0\]"
    with pytest.raises(FileExistsError, match=message):
        load_imdb(tmp_path, download=False)
    with pytest.raises(FileExistsError, match=message):
        load_imdb(tmp_path, url="file:///nonexistent/aclImdb_v1.tar.gz")


def test_a_folder_placed_by_hand_counts_when_every_review_is_there(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "IMDB_PART_SIZE", 2)  # 4 x 2 reviews stand for 4 x 12,500
    for split, name in [("train", "neg"), ("train", "pos"), ("test", "neg"), ("test", "pos")]:
        part = tmp_path / "aclImdb" / split / name
        part.mkdir(parents=True)
        for i in range(2):
            (part / f"{i}_5.txt").write_text(f"{split} {name} {i}")
    train, test = load_imdb(tmp_path, download=False)
    assert len(train) == len(test) == 4
