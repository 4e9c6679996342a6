"""Tests for the tiny Shakespeare loader (companion.data.load_tiny_shakespeare)."""

import hashlib

import pytest

from companion import data
from companion.data import TINY_SHAKESPEARE_SHA256, load_tiny_shakespeare


def test_whole_text_has_the_published_size_alphabet_and_checksum():
    text = load_tiny_shakespeare()
    assert len(text) == 1_115_394
    assert len(set(text)) == 65
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == TINY_SHAKESPEARE_SHA256
    assert text.startswith("First Citizen:\nBefore we proceed any further")


def test_split_is_contiguous_ninety_ten_as_in_nanogpt():
    text = load_tiny_shakespeare()
    train = load_tiny_shakespeare("train")
    val = load_tiny_shakespeare("val")
    assert len(train) == int(len(text) * 0.9) == 1_003_854
    assert len(val) == 111_540
    assert train + val == text


@pytest.mark.parametrize("bad", ["test", "TRAIN", "", 0.9])
def test_bad_split_name_is_refused(bad):
    with pytest.raises(ValueError, match="split must be None, 'train' or 'val'"):
        load_tiny_shakespeare(bad)


def test_damaged_text_is_detected(monkeypatch):
    monkeypatch.setattr(data, "TINY_SHAKESPEARE_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="damaged"):
        load_tiny_shakespeare()


def test_loader_is_exported():
    assert "load_tiny_shakespeare" in data.__all__
