"""companion.device: the device choice, its overrides and error messages, seeding, the summary
line."""

import random

import numpy as np
import pytest
import torch

from companion import device as dev


def test_auto_picks_cpu_without_accelerators(monkeypatch):
    monkeypatch.delenv(dev.DEVICE_ENV_VAR, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "_mps_available", lambda: False)
    assert dev.pick_device() == torch.device("cpu")
    assert dev.pick_device("auto") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.delenv(dev.DEVICE_ENV_VAR, raising=False)
    monkeypatch.setattr(dev, "_mps_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dev.pick_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dev.pick_device() == torch.device("mps")


def test_argument_overrides_environment(monkeypatch):
    monkeypatch.setenv(dev.DEVICE_ENV_VAR, "mps")
    assert dev.pick_device("cpu") == torch.device("cpu")
    assert dev.pick_device(torch.device("cpu")) == torch.device("cpu")


def test_environment_variable_overrides_auto(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv(dev.DEVICE_ENV_VAR, "cpu")
    assert dev.pick_device() == torch.device("cpu")


def test_unavailable_cuda_is_an_error_not_a_silent_fallback(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="'cuda' was requested .*argument"):
        dev.pick_device("cuda")
    monkeypatch.setenv(dev.DEVICE_ENV_VAR, "cuda:0")
    with pytest.raises(RuntimeError, match=f"environment variable {dev.DEVICE_ENV_VAR}"):
        dev.pick_device()


def test_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RuntimeError, match="expected a CUDA index below 1, got cuda:3"):
        dev.pick_device("cuda:3")


def test_unavailable_mps_is_an_error(monkeypatch):
    monkeypatch.setattr(dev, "_mps_available", lambda: False)
    with pytest.raises(RuntimeError, match="'mps' was requested"):
        dev.pick_device("mps")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", ""])
def test_nonsense_device_names_say_what_was_expected(bad):
    with pytest.raises(ValueError, match=f"expected .*got {bad!r}"):
        dev.pick_device(bad)


def test_seed_everything_repeats_all_generators():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3)

    dev.seed_everything(123)
    first = draw()
    dev.seed_everything(123)
    second = draw()
    dev.seed_everything(124)
    third = draw()
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])
    assert first[0] != third[0] and not torch.equal(first[2], third[2])


@pytest.mark.parametrize("bad", [1.5, "0", True])
def test_seed_must_be_an_int(bad):
    with pytest.raises(TypeError, match="expected an int seed"):
        dev.seed_everything(bad)


def test_environment_summary_names_torch_and_device(monkeypatch):
    monkeypatch.delenv(dev.DEVICE_ENV_VAR, raising=False)
    line = dev.environment_summary("cpu")
    assert line.startswith(f"torch {torch.__version__.split('+')[0]} | device cpu (")
    assert "CPU thread" in line and "\n" not in line


@pytest.mark.parametrize("threads, words", [(1, "1 CPU thread"), (3, "3 CPU threads")])
def test_environment_summary_counts_threads_in_good_english(monkeypatch, threads, words):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    assert dev.environment_summary("cpu").endswith(words)


@pytest.mark.parametrize("name", ["CPU", " Cpu ", "AUTO", "Auto"])
def test_case_is_ignored_for_every_name(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "_mps_available", lambda: False)
    assert dev.pick_device(name) == torch.device("cpu")
    monkeypatch.setenv(dev.DEVICE_ENV_VAR, name)
    assert dev.pick_device() == torch.device("cpu")


def test_case_is_ignored_for_accelerators_too(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(dev, "_mps_available", lambda: True)
    assert dev.pick_device("CUDA:1") == torch.device("cuda", 1)
    assert dev.pick_device("MPS") == torch.device("mps")


def test_seed_follows_the_one_integer_rule():
    dev.seed_everything(np.int64(3))
    first = torch.rand(2)
    dev.seed_everything(3)
    assert torch.equal(torch.rand(2), first)
