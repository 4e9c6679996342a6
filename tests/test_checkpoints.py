"""companion.checkpoints: exact resume (shuffling, dropout, schedulers), and files that are
truncated, altered, foreign or for another model are refused before anything changes."""

from __future__ import annotations

import errno
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from companion.checkpoints import CheckpointError, _temp_prefix, load_checkpoint, save_checkpoint
from companion.train import fit

EPOCHS, STOP = 4, 2  # the whole run, and the epoch after which it is interrupted


class Dropped(nn.Module):
    """Two LSTM layers with dropout between them and on the head: every step draws from torch's
    generator, so a resumed run that does not restore it diverges."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, 6, num_layers=2, dropout=0.3, batch_first=True)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.lstm(x)[0][:, -1]))


SCHEDULERS = {
    "multistep": lambda opt: torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=[1, 3], gamma=0.5
    ),
    "lambda": lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.8**epoch),
    "cosine": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS),
}


def setup(kind: str, seed: int):
    torch.manual_seed(seed)
    model = Dropped()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 5, 1, generator=g)
    loader = DataLoader(TensorDataset(x, x.sum(dim=1)), batch_size=8, shuffle=True)
    return model, opt, SCHEDULERS[kind](opt), loader


def train(model, opt, scheduler, loader, epochs, history=None):
    return fit(
        model,
        loader,
        loss_fn=nn.MSELoss(),
        optimizer=opt,
        epochs=epochs,
        scheduler=scheduler,
        progress=False,
        history=history,
    )


@pytest.mark.parametrize("kind", list(SCHEDULERS))
def test_resume_after_epoch_k_gives_the_same_weights_bit_for_bit(tmp_path, kind):
    model, opt, scheduler, loader = setup(kind, seed=0)
    torch.manual_seed(123)
    train(model, opt, scheduler, loader, EPOCHS)
    uninterrupted = {k: v.clone() for k, v in model.state_dict().items()}

    model, opt, scheduler, loader = setup(kind, seed=0)
    torch.manual_seed(123)
    history = train(model, opt, scheduler, loader, STOP)
    path = save_checkpoint(tmp_path / "run.pt", model, opt, history, scheduler=scheduler)

    # A new process, as it were: other weights, other generator states, a fresh scheduler.
    model, opt, scheduler, loader = setup(kind, seed=7)
    torch.rand(100), np.random.rand(3), random.random()
    saved = load_checkpoint(path, model, opt, scheduler=scheduler, restore_rng=True)
    assert scheduler.last_epoch == STOP
    history = train(model, opt, scheduler, loader, EPOCHS - STOP, history=saved["history"])
    assert history["epoch"] == list(range(1, EPOCHS + 1))
    for name, value in model.state_dict().items():
        assert torch.equal(value, uninterrupted[name]), name


def test_rng_states_of_every_generator_are_restored(tmp_path):
    model = nn.Linear(2, 1)
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    path = save_checkpoint(tmp_path / "ck.pt", model)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    load_checkpoint(path, model, restore_rng=True)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    load_checkpoint(path, model)  # without restore_rng: the generators go on
    assert not torch.equal(torch.rand(3), expected[0])


def saved(tmp_path):
    torch.manual_seed(0)
    model = nn.LSTM(2, 3)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 1, 2))[0].sum().backward()
    opt.step()
    return save_checkpoint(tmp_path / "ck.pt", model, opt), model, opt


def fresh():
    torch.manual_seed(1)
    model = nn.LSTM(2, 3)
    return model, torch.optim.Adam(model.parameters())


def unchanged(model: nn.Module, before: dict) -> bool:
    return all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.9, 0.999])
def test_a_truncated_file_is_refused_naming_the_path(tmp_path, keep):
    path, *_ = saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    model, _ = fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=rf"{path}.* is corrupt or not a checkpoint"):
        load_checkpoint(path, model)
    assert unchanged(model, before)


def test_a_flipped_byte_is_refused(tmp_path):
    path, model, _ = saved(tmp_path)
    data = bytearray(path.read_bytes())
    weights = model.weight_hh_l0.detach().numpy().tobytes()
    at = data.find(weights)  # tensors are stored uncompressed: the weights lie in the file as-is
    assert at > 0
    for offset in (0, len(weights) // 2):
        damaged = bytearray(data)
        damaged[at + offset] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(CheckpointError, match="corrupt or not a checkpoint"):
            load_checkpoint(path, fresh()[0])


def test_a_foreign_file_is_refused(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(nn.LSTM(2, 3).state_dict(), path)  # a plain state dict, not a checkpoint
    with pytest.raises(CheckpointError, match="expected a file written by save_checkpoint"):
        load_checkpoint(path, nn.LSTM(2, 3))
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="text.pt is corrupt or not a checkpoint"):
        load_checkpoint(tmp_path / "text.pt", nn.LSTM(2, 3))
    with pytest.raises(FileNotFoundError, match="no file"):
        load_checkpoint(tmp_path / "missing.pt", nn.LSTM(2, 3))


def test_a_mismatched_optimizer_is_found_before_the_model_changes(tmp_path):
    path, *_ = saved(tmp_path)
    model, _ = fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    groups = torch.optim.Adam(
        [
            {"params": [model.weight_ih_l0]},
            {"params": [p for n, p in model.named_parameters() if n != "weight_ih_l0"]},
        ]
    )
    with pytest.raises(
        ValueError, match=r"parameter groups of sizes \[4\], this Adam has \[1, 3\]"
    ):
        load_checkpoint(path, model, groups)
    assert unchanged(model, before)
    shuffled = torch.optim.Adam(list(model.parameters())[::-1])  # Adam's moments by shape
    with pytest.raises(ValueError, match=r"optimizer state 'exp_avg' .* has shape"):
        load_checkpoint(path, model, shuffled)
    assert unchanged(model, before)


def test_a_mismatched_model_names_every_difference_and_stays_untouched(tmp_path):
    path, *_ = saved(tmp_path)
    other = nn.LSTM(2, 4, bias=False)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(
        RuntimeError,
        match=r"unexpected keys \['bias_ih_l0', 'bias_hh_l0'\]"
        r".*weight_ih_l0: shape \(12, 2\) in the file",
    ):
        load_checkpoint(path, other)
    assert unchanged(other, before)


def test_scheduler_state_must_be_there_when_asked_for(tmp_path):
    path, *_ = saved(tmp_path)
    model, opt = fresh()
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    with pytest.raises(ValueError, match="expected scheduler state"):
        load_checkpoint(path, model, opt, scheduler=scheduler)
    assert math.isclose(opt.param_groups[0]["lr"], 1e-3)


def test_the_config_is_readable_before_a_model_exists_and_checked(tmp_path):
    model = nn.LSTM(2, 3)
    path = save_checkpoint(tmp_path / "ck.pt", model, config={"hidden": 3, "cell": "LSTM"})
    envelope = torch.load(path, weights_only=True)
    assert envelope["config"] == {"hidden": 3, "cell": "LSTM"}  # to rebuild the model from
    envelope["config"]["hidden"] = 4  # the config outside the digest, altered
    torch.save(envelope, path)
    with pytest.raises(CheckpointError, match="config outside its payload differs"):
        load_checkpoint(path, nn.LSTM(2, 3))


# ------------------------------------------------------------------------------------------------
# A full disk, and the temporary files of killed saves
# ------------------------------------------------------------------------------------------------


def temps(folder) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


class FullDisk:
    """A file object whose writes fail as on a full disk, after ``allow`` bytes."""

    def __init__(self, file, allow: int) -> None:
        self.file, self.allow = file, allow

    def write(self, data) -> int:
        if len(data) > self.allow:
            self.file.write(bytes(data[: self.allow]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_a_full_disk_says_so_and_keeps_the_old_checkpoint(tmp_path, monkeypatch, where):
    path, model, opt = saved(tmp_path)
    before = path.read_bytes()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # the new checkpoint would differ
    if where == "write":
        real = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(real(fd, mode), 100))
    else:

        def fsync(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match=rf"no space left on device writing {path}") as info:
        save_checkpoint(path, model, opt)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert "previous checkpoint there is unchanged" in str(info.value)
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old checkpoint, whole
    assert temps(tmp_path) == []  # and nothing half-written beside it
    load_checkpoint(path, fresh()[0])  # still loads


def test_other_write_errors_pass_through_and_leave_nothing(tmp_path, monkeypatch):
    path, model, opt = saved(tmp_path)

    def fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output error") as info:
        save_checkpoint(path, model, opt)
    assert info.value.errno == errno.EIO
    monkeypatch.undo()
    assert temps(tmp_path) == []


def test_the_temporary_file_of_a_killed_save_is_removed_by_the_next(tmp_path):
    """A save killed mid-write (SIGKILL: no cleanup runs) leaves its temporary file; the next
    save of the same path removes it, and leaves other files and live saves' files alone."""
    path = tmp_path / "run.pt"
    code = (
        "import os, sys, companion.checkpoints as c\n"
        "from pathlib import Path\n"
        "p = Path(sys.argv[1])\n"
        "fd, tmp = c.tempfile.mkstemp(dir=p.parent, prefix=c._temp_prefix(p), suffix='.tmp')\n"
        "os.write(fd, b'half a checkpoint')\n"
        "os.kill(os.getpid(), 9)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    killed = subprocess.run([sys.executable, "-c", code, str(path)], env=env)
    assert killed.returncode == -9
    assert len(temps(tmp_path)) == 1
    # a live save in this process, and an unrelated dotfile, must survive
    live = tmp_path / f"{_temp_prefix(path)}live.tmp"
    live.write_bytes(b"being written")
    other = tmp_path / ".run.pt.notes"
    other.write_bytes(b"mine")
    old_foreign = tmp_path / ".run.pt.elsewhere.1.abc.tmp"  # another host's, untouched for days
    old_foreign.write_bytes(b"old")
    os.utime(old_foreign, (0, 0))
    model, opt = fresh()
    save_checkpoint(path, model, opt)
    assert temps(tmp_path) == [live.name]
    assert other.exists()
    load_checkpoint(path, model)
