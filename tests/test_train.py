"""Tests for companion.train: the loop, TBPTT, closures, interrupts, AMP fallback, checkpoints.

Models are torch.nn layers or tiny wrappers, so these tests do not depend on companion.models.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import warnings
from collections import namedtuple

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils.data import DataLoader, TensorDataset

from companion import models
from companion.checkpoints import FORMAT
from companion.train import (
    History,
    detach_state,
    evaluate,
    fit,
    load_checkpoint,
    predict,
    save_checkpoint,
    to_device,
)


class LastStep(nn.Module):
    """LSTM over (N, L, 1) followed by a linear head on the last hidden state -> (N, 1)."""

    def __init__(self, hidden: int = 4) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def sum_task(n: int = 32, length: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, length, 1, generator=g)
    return x, x.sum(dim=1)


def batches(x: torch.Tensor, y: torch.Tensor, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def make(seed: int = 0, lr: float = 0.05, hidden: int = 4):
    torch.manual_seed(seed)
    model = LastStep(hidden)
    return model, torch.optim.Adam(model.parameters(), lr=lr)


def mae(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (pred - y).abs().mean()


# ------------------------------------------------------------------------------------------------
# fit: records
# ------------------------------------------------------------------------------------------------


def test_fit_learns_and_records_every_key():
    x, y = sum_task()
    model, opt = make()
    train, val = batches(x[:24], y[:24], 8), batches(x[24:], y[24:], 4)
    hist = fit(
        model,
        train,
        loss_fn=nn.MSELoss(),
        optimizer=opt,
        epochs=8,
        val_data=val,
        metrics={"mae": mae},
        progress=False,
    )
    assert isinstance(hist, History) and len(hist) == 8 and not hist.interrupted
    assert hist["epoch"] == list(range(1, 9))
    assert hist.keys() == ["epoch", "train_loss", "val_loss", "val_mae", "grad_norm", "lr", "time"]
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    assert all(isinstance(v, float) for v in hist["val_mae"])
    assert all(g > 0 for g in hist["grad_norm"])
    assert hist["lr"] == [0.05] * 8
    assert all(b >= a for a, b in zip(hist["time"], hist["time"][1:]))
    assert hist[-1]["val_loss"] == pytest.approx(
        evaluate(model, val, loss_fn=nn.MSELoss())["loss"], rel=1e-6
    )


def test_metrics_without_validation_are_train_metrics():
    x, y = sum_task(8)
    model, opt = make()
    hist = fit(
        model,
        (x, y),
        loss_fn=nn.MSELoss(),
        optimizer=opt,
        epochs=2,
        metrics={"mae": mae},
        progress=False,
    )
    assert "train_mae" in hist.keys() and "val_loss" not in hist.keys()


def test_train_loss_is_weighted_by_batch_size():
    # lr = 0: the model does not change, so the epoch mean must equal the full-data loss
    # even though the last batch is shorter (3 batches of 4, 4, 2).
    x, y = sum_task(10)
    model, _ = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    hist = fit(
        model, batches(x, y, 4), loss_fn=nn.MSELoss(), optimizer=opt, epochs=1, progress=False
    )
    with torch.no_grad():
        full = nn.functional.mse_loss(model(x), y).item()
    assert hist["train_loss"][0] == pytest.approx(full, rel=1e-5)
    assert evaluate(model, batches(x, y, 4), loss_fn=nn.MSELoss())["loss"] == pytest.approx(
        full, rel=1e-5
    )


def test_grad_norm_is_recorded_before_clipping_and_grads_are_clipped():
    x, y = sum_task(8)
    model, _ = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    nn.functional.mse_loss(model(x), y).backward()
    expected = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in model.parameters()])
    ).item()
    hist = fit(
        model,
        (x, y),
        loss_fn=nn.MSELoss(),
        optimizer=opt,
        epochs=1,
        progress=False,
        clip_grad_norm=1e-3,
    )
    assert hist["grad_norm"][0] == pytest.approx(expected, rel=1e-5)
    assert expected > 1e-3
    after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert after.item() <= 1e-3 * (1 + 1e-4)


def test_scheduler_is_stepped_once_per_epoch_and_lr_is_the_epochs_own():
    x, y = sum_task(8)
    model, opt = make(lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    hist = fit(
        model,
        batches(x, y, 4),
        loss_fn=nn.MSELoss(),
        optimizer=opt,
        epochs=3,
        scheduler=sched,
        progress=False,
    )
    assert hist["lr"] == pytest.approx([0.1, 0.05, 0.025])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0125)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0)
    fit(
        model,
        (x, y),
        loss_fn=nn.MSELoss(),
        optimizer=opt,
        epochs=2,
        val_data=(x, y),
        scheduler=plateau,
        progress=False,
    )


def test_fit_appends_to_a_given_history():
    x, y = sum_task(8)
    model, opt = make()
    hist = fit(model, (x, y), loss_fn=nn.MSELoss(), optimizer=opt, epochs=2, progress=False)
    again = fit(
        model, (x, y), loss_fn=nn.MSELoss(), optimizer=opt, epochs=2, progress=False, history=hist
    )
    assert again is hist and hist["epoch"] == [1, 2, 3, 4]
    assert all(b >= a for a, b in zip(hist["time"], hist["time"][1:]))


def test_fit_restores_the_training_mode_and_epochs_zero():
    x, y = sum_task(8)
    model, opt = make()
    model.eval()
    assert (
        len(fit(model, (x, y), loss_fn=nn.MSELoss(), optimizer=opt, epochs=0, progress=False)) == 0
    )
    fit(model, (x, y), loss_fn=nn.MSELoss(), optimizer=opt, epochs=1, progress=False)
    assert not model.training


# ------------------------------------------------------------------------------------------------
# fit: batches, devices, progress
# ------------------------------------------------------------------------------------------------


class PackedClassifier(nn.Module):
    """Embedding + LSTM over a padded batch (N, L) with lengths (N,) -> logits (N, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(6, 3, padding_idx=0)
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # pack_padded_sequence requires CPU lengths whatever the device of the data.
        packed = pack_padded_sequence(
            self.emb(padded), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, (h, _) = self.lstm(packed)
        return self.head(h[-1])


def test_batches_with_several_inputs_call_model_with_all_of_them():
    torch.manual_seed(0)
    padded = torch.randint(1, 6, (6, 4))
    lengths = torch.tensor([4, 2, 3, 1, 4, 2])
    padded[torch.arange(4) >= lengths[:, None]] = 0
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    model = PackedClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    flat = [(padded[:3], lengths[:3], labels[:3]), (padded[3:], lengths[3:], labels[3:])]
    nested = [((p, n), t) for p, n, t in flat]
    for data in (flat, nested):
        hist = fit(
            model,
            data,
            loss_fn=nn.CrossEntropyLoss(),
            optimizer=opt,
            epochs=1,
            progress=False,
            metrics={"acc": lambda p, t: (p.argmax(-1) == t).float().mean()},
        )
        assert math.isfinite(hist["train_loss"][0]) and 0 <= hist["train_acc"][0] <= 1
    assert predict(model, [((padded, lengths), labels)]).shape == (6, 2)


def test_works_with_a_dataloader_and_explicit_device():
    x, y = sum_task(12)
    model, opt = make()
    loader = DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True)
    hist = fit(
        model, loader, loss_fn=nn.MSELoss(), optimizer=opt, epochs=2, progress=False, device="cpu"
    )
    assert len(hist) == 2


def test_to_device_moves_nested_tensors_and_leaves_the_rest():
    Pair = namedtuple("Pair", "a b")
    t = torch.ones(2)
    packed = pack_padded_sequence(torch.ones(2, 3, 1), torch.tensor([3, 2]), batch_first=True)
    moved = to_device({"x": (t, [t, 3]), "p": Pair(t, "s"), "packed": packed}, "cpu")
    assert isinstance(moved["p"], Pair) and moved["p"].b == "s"
    assert moved["x"][1][1] == 3 and torch.equal(moved["x"][0], t)
    assert torch.equal(
        pad_packed_sequence(moved["packed"], batch_first=True)[0],
        pad_packed_sequence(packed, batch_first=True)[0],
    )


def test_bad_inputs_raise_clear_errors():
    x, y = sum_task(8)
    model, opt = make()
    kw = dict(loss_fn=nn.MSELoss(), optimizer=opt, progress=False)
    with pytest.raises(TypeError, match=r"expected each batch to be \(x, y\).*tensor of shape"):
        fit(model, [x], epochs=1, **kw)
    with pytest.raises(TypeError, match="re-iterable"):
        fit(model, iter(batches(x, y, 4)), epochs=2, **kw)
    with pytest.raises(ValueError, match="no batches"):
        fit(model, [], epochs=1, **kw)
    with pytest.raises(ValueError, match="epochs"):
        fit(model, (x, y), epochs=-1, **kw)
    with pytest.raises(ValueError, match="scalar"):
        fit(
            model,
            (x, y),
            epochs=1,
            loss_fn=nn.MSELoss(reduction="none"),
            optimizer=opt,
            progress=False,
        )


def test_progress_bar_goes_to_stderr_once_per_fit_and_can_be_silenced(capsys):
    x, y = sum_task(8)
    model, opt = make()
    fit(model, batches(x, y, 4), loss_fn=nn.MSELoss(), optimizer=opt, epochs=2, val_data=(x, y))
    err = capsys.readouterr().err
    assert " loss=" in err and "val_loss=" in err and "2/2" in err
    # 80 columns, the width of the book's pages, even with a long run and both losses.
    assert max(len(line) for line in re.split(r"[\r\n]", err)) <= 80
    fit(model, (x, y), loss_fn=nn.MSELoss(), optimizer=opt, epochs=2, progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


# ------------------------------------------------------------------------------------------------
# fit: closures, TBPTT, interrupts, NaN, AMP
# ------------------------------------------------------------------------------------------------


def test_lbfgs_is_stepped_with_a_closure_and_converges():
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 20).unsqueeze(1)
    y = 2 * x + 1
    model = nn.Linear(1, 1)
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=20, line_search_fn="strong_wolfe")
    hist = fit(model, (x, y), loss_fn=nn.MSELoss(), optimizer=opt, epochs=3, progress=False)
    assert evaluate(model, (x, y), loss_fn=nn.MSELoss())["loss"] < 1e-8
    assert hist["train_loss"][0] > 1e-2 > hist["train_loss"][-1]
    assert torch.allclose(model.weight, torch.tensor([[2.0]]), atol=1e-4)


class Recorder(nn.Module):
    """h_t = tanh(W x_t + U h_{t-1}) over a chunk (N, L, 1); prediction (N, L, 1); state (N, H).

    Records the state it received and the state it returned for every call.
    """

    def __init__(self, hidden: int = 3) -> None:
        super().__init__()
        self.cell = nn.RNNCell(1, hidden)
        self.head = nn.Linear(hidden, 1)
        self.received: list = []
        self.returned: list = []

    def forward(self, x: torch.Tensor, state: torch.Tensor | None):
        self.received.append(state)
        h = state
        outs = []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
            outs.append(self.head(h))
        self.returned.append(h)
        return torch.stack(outs, dim=1), h


def test_stateful_carries_a_detached_state_and_resets_it_each_epoch():
    torch.manual_seed(0)
    series = torch.sin(torch.linspace(0, 6, 2 * 13)).reshape(2, 13, 1)
    chunks = [(series[:, i : i + 4], series[:, i + 1 : i + 5]) for i in range(0, 12, 4)]
    model = Recorder()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    fit(model, chunks, loss_fn=nn.MSELoss(), optimizer=opt, epochs=2, stateful=True, progress=False)
    assert len(model.received) == 6
    assert model.received[0] is None and model.received[3] is None
    for k in (1, 2, 4, 5):
        got, sent = model.received[k], model.returned[k - 1]
        assert got.grad_fn is None and not got.requires_grad
        assert sent.grad_fn is not None  # it was cut, not created without a graph
        assert torch.equal(got, sent.detach())
    model.received.clear()
    evaluate(model, chunks, loss_fn=nn.MSELoss(), stateful=True)
    assert model.received[0] is None and model.received[1] is not None
    assert predict(model, [c[0] for c in chunks], stateful=True, dim=1).shape == (2, 12, 1)


def test_stateful_model_must_return_a_pair():
    class Forgetful(LastStep):
        def forward(self, x, state):  # accepts a state but returns only the prediction
            return super().forward(x)

    x, y = sum_task(4)
    model = Forgetful()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match=r"return \(prediction, state\), got a tensor"):
        fit(
            model,
            (x, y),
            loss_fn=nn.MSELoss(),
            optimizer=opt,
            epochs=1,
            stateful=True,
            progress=False,
        )


def test_keyboard_interrupt_stops_the_caller_with_the_history_so_far(capsys):
    """Ctrl-C is not swallowed (as in Keras and Lightning): a loop over runs stops."""
    x, y = sum_task(12)
    model, opt = make()
    calls = {"n": 0}

    def loss_fn(pred, target):
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2, batch index 1 (3 batches per epoch)
            raise KeyboardInterrupt
        return nn.functional.mse_loss(pred, target)

    passed, started = History(), []
    with pytest.raises(KeyboardInterrupt) as info:
        for run in range(3):  # a loop of runs: the first Ctrl-C ends the loop
            started.append(run)
            fit(model, batches(x, y, 4), loss_fn=loss_fn, optimizer=opt, epochs=5,
                progress=False, history=passed)  # fmt: skip
    assert started == [0]
    assert info.value.history is passed and passed.interrupted and len(passed) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted in epoch 2 (batch 2), at a step boundary" in err
    assert model.training
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class SlowSGD(torch.optim.Optimizer):
    """Plain SGD that steps one parameter at a time and gets a real SIGINT half-way through,
    as a Ctrl-C that lands inside ``optimizer.step()``."""

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, {"lr": lr})
        self.signal_at_step = None
        self.steps = 0

    @torch.no_grad()
    def step(self, closure=None):
        self.steps += 1
        params = [p for group in self.param_groups for p in group["params"]]
        for k, p in enumerate(params):
            if self.steps == self.signal_at_step and k == len(params) // 2:
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # Python runs the handler between these bytecodes
                    pass
            p.add_(p.grad, alpha=-self.param_groups[0]["lr"])


def test_a_real_sigint_inside_the_optimizer_step_waits_for_the_whole_step():
    x, y = sum_task(12)
    torch.manual_seed(0)
    model = LastStep()
    opt = SlowSGD(model.parameters(), lr=0.1)
    opt.signal_at_step = 2
    seen = {}

    def loss_fn(pred, target):  # records, before each step, the weights and then the grads
        seen["before"] = [p.detach().clone() for p in model.parameters()]
        return nn.functional.mse_loss(pred, target)

    with pytest.raises(KeyboardInterrupt) as info:
        fit(model, batches(x, y, 4), loss_fn=loss_fn, optimizer=opt, epochs=3, progress=False)
    assert opt.steps == 2 and len(info.value.history) == 0
    grads = [p.grad for p in model.parameters()]
    for p, before, g in zip(model.parameters(), seen["before"], grads):
        torch.testing.assert_close(p.detach(), before - 0.1 * g)  # every parameter stepped
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_metric_that_raises_in_validation_names_itself_the_phase_and_the_epoch():
    x, y = sum_task(12)
    model, opt = make()
    calls = {"n": 0}

    def flaky(pred, target):
        calls["n"] += 1
        if calls["n"] == 2:  # the second validation pass: epoch 2
            raise ValueError("labels must be integers")
        return 0.0

    history = History()
    with pytest.raises(ValueError, match="labels must be integers") as info:
        fit(model, batches(x, y, 12), loss_fn=nn.MSELoss(), optimizer=opt, epochs=3,
            val_data=(x, y), metrics={"acc": flaky}, progress=False, history=history)  # fmt: skip
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "raised by metric 'acc'" in notes
    assert "fit: in epoch 2 (validation)" in notes and "1 completed epoch " in notes
    assert info.value.history is history and len(history) == 1


def test_a_loss_that_raises_in_training_names_itself_and_the_batch():
    x, y = sum_task(12)
    model, opt = make()

    def loss_fn(pred, target):
        raise RuntimeError("shape mismatch in my loss")

    with pytest.raises(RuntimeError, match="shape mismatch in my loss") as info:
        fit(model, batches(x, y, 4), loss_fn=loss_fn, optimizer=opt, epochs=1, progress=False)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "raised by loss_fn" in notes and "fit: in epoch 1 (batch 1)" in notes


def test_nan_loss_raises_naming_epoch_and_batch_and_leaves_parameters_finite():
    x, y = sum_task(12)
    y[9] = float("nan")  # in batch index 2
    model, opt = make()
    message = r"epoch 1, batch 3.*learning rate.*clip_grad_norm"
    with pytest.raises(FloatingPointError, match=message):
        fit(model, batches(x, y, 4), loss_fn=nn.MSELoss(), optimizer=opt, epochs=2, progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_amp_on_cpu_warns_and_trains_exactly_as_float32():
    x, y = sum_task(8)
    results = []
    for amp in (False, True):
        model, opt = make()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hist = fit(
                model,
                batches(x, y, 4),
                loss_fn=nn.MSELoss(),
                optimizer=opt,
                epochs=2,
                amp=amp,
                progress=False,
            )
        messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        assert any("float32" in m for m in messages) == amp
        results.append((hist["train_loss"], [p.detach().clone() for p in model.parameters()]))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("amp", [True, torch.float16])
def test_amp_on_cuda_trains(amp):
    x, y = sum_task(64)
    model, opt = make(hidden=16)
    model.cuda()
    hist = fit(
        model,
        batches(x, y, 16),
        loss_fn=nn.MSELoss(),
        optimizer=opt,
        epochs=5,
        amp=amp,
        clip_grad_norm=1.0,
        val_data=(x, y),
        progress=False,
    )
    assert all(math.isfinite(v) for v in hist["train_loss"])
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert next(model.parameters()).dtype == torch.float32


# ------------------------------------------------------------------------------------------------
# evaluate, predict, detach_state
# ------------------------------------------------------------------------------------------------


def test_evaluate_uses_eval_mode_without_grad_and_restores_mode():
    x, y = sum_task(8)
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(5, 1))
    seen = {}

    def metric(pred, target):
        seen["grad"] = pred.requires_grad
        return 1.5

    for training in (True, False):
        model.train(training)
        a = evaluate(model, batches(x, y, 3), loss_fn=nn.MSELoss(), metrics={"m": metric})
        b = evaluate(model, batches(x, y, 3), loss_fn=nn.MSELoss(), metrics={"m": metric})
        assert a == b and set(a) == {"loss", "m"} and a["m"] == 1.5  # dropout off: deterministic
        assert model.training is training and seen["grad"] is False
    with pytest.raises(ValueError, match="no batches"):
        evaluate(model, [], loss_fn=nn.MSELoss())


def test_predict_accepts_tensors_and_batches_and_returns_cpu():
    x, y = sum_task(10)
    model, _ = make()
    model.train()
    with torch.no_grad():
        expected = model(x)
    for data in (
        x,
        batches(x, y, 4),
        DataLoader(TensorDataset(x), batch_size=3),
        [b[0] for b in batches(x, y, 4)],
    ):
        out = predict(model, data)
        assert out.device.type == "cpu" and not out.requires_grad
        assert torch.allclose(out, expected, atol=1e-6)
    assert model.training
    lstm = nn.LSTM(1, 3)  # returns (output, (h, c)): the output is the prediction
    assert predict(lstm, x.transpose(0, 1)).shape == (5, 10, 3)


def test_detach_state_keeps_structure_and_values():
    h = torch.ones(1, 2, 3, requires_grad=True) * 2
    c = torch.zeros(1, 2, 3, requires_grad=True) + 1
    assert detach_state(None) is None
    d = detach_state((h, c))
    assert isinstance(d, tuple) and all(t.grad_fn is None for t in d)
    assert torch.equal(d[0], h) and torch.equal(d[1], c)
    assert isinstance(detach_state([h]), list) and detach_state(h).grad_fn is None
    with pytest.raises(TypeError, match="expected a tensor.*got str"):
        detach_state("h")


# ------------------------------------------------------------------------------------------------
# History
# ------------------------------------------------------------------------------------------------


def test_history_round_trips_through_plain_data():
    hist = History(
        [
            {"epoch": 1, "train_loss": torch.tensor(0.5), "lr": 0.1},
            {"epoch": 2, "train_loss": 0.25, "val_loss": 0.3, "lr": 0.1},
        ],
        interrupted=True,
    )
    data = hist.to_dict()
    assert json.loads(json.dumps(data)) == data
    back = History.from_dict(data)
    assert back == hist and back.interrupted and len(back) == 2
    assert back["train_loss"] == [0.5, 0.25]
    assert math.isnan(back["val_loss"][0]) and back[-1]["val_loss"] == 0.3
    assert "interrupted" in repr(back)
    with pytest.raises(KeyError, match="keys are"):
        back["accuracy"]
    with pytest.raises(ValueError, match="records"):
        History.from_dict({"epochs": []})


def test_history_plot_uses_companion_plots():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    pytest.importorskip("companion.plots")
    import matplotlib.pyplot as plt

    hist = History(
        [
            {"epoch": 1, "train_loss": 1.0, "val_loss": 1.2},
            {"epoch": 2, "train_loss": 0.5, "val_loss": 0.7},
        ]
    )
    assert hist.plot() is not None
    ax = hist.plot(label="LSTM")
    from companion.plots import COLORS

    assert {line.get_color() for line in ax.get_lines()} == {COLORS["lstm"]}
    assert any("LSTM" in text.get_text() for text in ax.get_legend().get_texts())
    plt.close("all")


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------


def test_checkpoint_round_trip_resumes_exactly(tmp_path):
    x, y = sum_task(8)
    loss_fn = nn.MSELoss()
    model, opt = make()
    hist = fit(model, (x, y), loss_fn=loss_fn, optimizer=opt, epochs=2, progress=False)
    path = save_checkpoint(tmp_path / "ck.pt", model, opt, hist, config={"hidden": 4, "lr": [0.05]})
    assert path.exists() and os.listdir(tmp_path) == ["ck.pt"]

    other, other_opt = make(seed=1)
    info = load_checkpoint(path, other, other_opt)
    assert info["history"] == hist and info["config"] == {"hidden": 4, "lr": [0.05]}
    assert isinstance(info["companion_version"], str)
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)
    # The uninterrupted run and the resumed one take the same next step (Adam moments restored).
    for m, o in ((model, opt), (other, other_opt)):
        fit(m, (x, y), loss_fn=loss_fn, optimizer=o, epochs=1, progress=False)
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)
    assert torch.load(path, weights_only=True)["format"] == FORMAT  # torch reads it safely


def test_failed_save_keeps_the_old_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch):
    model, opt = make()
    path = save_checkpoint(tmp_path / "ck.pt", model)
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, opt)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ck.pt"]


def test_non_json_config_is_rejected_before_writing(tmp_path):
    model, _ = make()
    with pytest.raises(TypeError, match=r"config\['act'\].*JSON-like.*got type"):
        save_checkpoint(tmp_path / "ck.pt", model, config={"act": nn.Tanh})
    assert os.listdir(tmp_path) == []


def test_loading_into_a_mismatched_model_names_the_keys(tmp_path):
    model, _ = make(hidden=4)
    path = save_checkpoint(tmp_path / "ck.pt", model)
    bigger, bigger_opt = make(hidden=5)
    with pytest.raises(RuntimeError, match=r"(?s)does not fit this LastStep.*lstm\.weight_ih_l0"):
        load_checkpoint(path, bigger)
    with pytest.raises(ValueError, match="without an optimizer"):
        load_checkpoint(path, make(hidden=4)[0], bigger_opt)
    assert load_checkpoint(path, make(hidden=4)[0]) == {
        "history": None,
        "config": None,
        "companion_version": info_version(),
    }


def info_version() -> str:
    import companion

    return companion.__version__


def test_autocast_and_grad_scaler_branch_runs(monkeypatch):
    # The CUDA branch cannot run here; stand in CPU bfloat16 autocast and a CPU GradScaler so
    # the scaled backward / unscale / clip / step / update sequence is exercised.
    import companion.train as train

    if not hasattr(torch.amp, "GradScaler"):
        pytest.skip("torch.amp.GradScaler needs torch >= 2.3")
    monkeypatch.setattr(
        train,
        "amp_setup",
        lambda amp, device, use_closure: (
            torch.bfloat16,
            torch.amp.GradScaler("cpu", init_scale=2.0**8),
        ),
    )
    x, y = sum_task(16)
    model, _ = make()
    # companion's LSTM: torch.nn's oneDNN kernel has no bfloat16 LSTM on some CPUs.
    model.lstm = models.LSTM(1, 4, batch_first=True)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    hist = fit(
        model,
        batches(x, y, 8),
        loss_fn=nn.MSELoss(),
        optimizer=opt,
        epochs=4,
        amp=True,
        clip_grad_norm=1.0,
        metrics={"mae": mae},
        progress=False,
    )
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert all(0 < g < 1e3 for g in hist["grad_norm"])  # unscaled: not multiplied by 2**8
    assert next(model.parameters()).dtype == torch.float32


# ------------------------------------------------------------------------------------------------
# fit: attacks that once trained on silently or failed late
# ------------------------------------------------------------------------------------------------


class SqrtAtZero(nn.Module):
    """A finite loss whose gradient is NaN: d sqrt(u)/du at u = 0 is infinite, times 0 is NaN.
    Only the batch whose input is all zeros reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, 4, batch_first=True)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.lstm(x)[0][:, -1])
        return out + torch.sqrt((self.head.bias * x.abs().sum()) ** 2)


@pytest.mark.parametrize("clip", [None, 1.0])
def test_nan_gradient_with_finite_loss_raises_and_leaves_the_weights(clip):
    x, y = sum_task(8)
    data = batches(x, y, 4) + [(torch.zeros(4, 5, 1), y[:4])]  # the last batch: sqrt at 0
    torch.manual_seed(0)
    model = SqrtAtZero()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    before_last = {}

    def remember(module, args):  # the weights just before the last batch's step
        if not args[0].any():
            before_last.update({k: v.clone() for k, v in model.state_dict().items()})

    model.register_forward_pre_hook(remember)
    with pytest.raises(FloatingPointError, match=r"epoch 1, batch 3, .*head\.bias") as caught:
        fit(
            model,
            data,
            loss_fn=nn.MSELoss(),
            optimizer=opt,
            epochs=1,
            clip_grad_norm=clip,
            progress=False,
        )
    assert "weights are as they were" in str(caught.value)
    for name, value in model.state_dict().items():
        assert torch.isfinite(value).all() and torch.equal(value, before_last[name]), name


def test_lbfgs_puts_the_weights_back_when_a_later_closure_is_not_finite():
    class Fragile(nn.Module):  # finite at w = 1 only: any step makes the loss NaN
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.w + 0 * torch.sqrt(1e-6 - (self.w - 1) ** 2)

    model = Fragile()
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=5)
    x = torch.ones(4, 1)
    with pytest.raises(FloatingPointError, match=r"training loss became nan at epoch 1, batch 1;"):
        fit(model, (x, 3 * x), loss_fn=nn.MSELoss(), optimizer=opt, epochs=1, progress=False)
    assert model.w.item() == 1.0


def test_history_is_kept_on_any_error():
    x, y = sum_task(8)
    model, opt = make()
    calls = []

    def loss_fn(pred, target):
        calls.append(1)
        if len(calls) > 4:  # the third epoch's first batch
            raise ValueError("broken loss")
        return nn.functional.mse_loss(pred, target)

    history = History()
    with pytest.raises(ValueError, match="broken loss") as caught:
        fit(
            model,
            batches(x, y, 4),
            loss_fn=loss_fn,
            optimizer=opt,
            epochs=5,
            progress=False,
            history=history,
        )
    assert caught.value.history is history and history["epoch"] == [1, 2]
    with pytest.raises(ValueError, match="broken loss") as caught:
        fit(model, batches(x, y, 4), loss_fn=loss_fn, optimizer=opt, epochs=5, progress=False)
    assert len(caught.value.history) == 0  # failed in its first epoch: an empty history


def test_empty_val_data_fails_before_training():
    x, y = sum_task(8)
    model, opt = make()
    before = [p.clone() for p in model.parameters()]
    for empty in ([], DataLoader(TensorDataset(x[:0], y[:0]), batch_size=4)):
        with pytest.raises(ValueError, match="val_data yielded no batches"):
            fit(
                model,
                (x, y),
                loss_fn=nn.MSELoss(),
                optimizer=opt,
                epochs=1,
                val_data=empty,
                progress=False,
            )
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_stateful_time_major_chunks_of_other_lengths_are_fine():
    # y is (L, N, 1): its first dimension is time, which may shrink in the last chunk.
    class TimeMajor(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(1, 4)
            self.head = nn.Linear(4, 1)

        def forward(self, x, state):
            out, state = self.lstm(x, state)
            return self.head(out), state

    torch.manual_seed(0)
    series = torch.rand(10, 3, 1)
    chunks = [(series[i : i + 4], series[i : i + 4] * 2) for i in range(0, 10, 4)]  # 4, 4, 2
    model = TimeMajor()
    hist = fit(
        model,
        chunks,
        loss_fn=nn.MSELoss(),
        optimizer=torch.optim.Adam(model.parameters()),
        epochs=2,
        stateful=True,
        val_data=chunks,
        progress=False,
    )
    assert len(hist) == 2


def test_stateful_run_with_a_short_last_batch_gets_a_hint():
    x, y = sum_task(10)

    class Stateful(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(1, 4, batch_first=True)

        def forward(self, x, state):
            out, state = self.lstm(x, state)
            return out[:, -1, :1], state

    model = Stateful()
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError, match=r"batch 3 has 2 samples after batches of 4.*drop_last"):
        fit(
            model,
            batches(x, y, 4),
            loss_fn=nn.MSELoss(),
            optimizer=opt,
            epochs=1,
            stateful=True,
            progress=False,
        )


@pytest.mark.parametrize(
    ("clip", "error"),
    [("1", TypeError), (True, TypeError), (0, ValueError), (-1.0, ValueError)]
    + [(math.inf, ValueError), (math.nan, ValueError)],
)
def test_clip_grad_norm_must_be_a_positive_number(clip, error):
    x, y = sum_task(8)
    model, opt = make()
    with pytest.raises(
        error, match=r"fit: expected clip_grad_norm to be a positive number or None"
    ):
        fit(
            model,
            (x, y),
            loss_fn=nn.MSELoss(),
            optimizer=opt,
            epochs=1,
            clip_grad_norm=clip,
            progress=False,
        )


def test_epochs_follow_the_one_integer_rule():
    np = pytest.importorskip("numpy")
    x, y = sum_task(8)
    model, opt = make()
    hist = fit(
        model, (x, y), loss_fn=nn.MSELoss(), optimizer=opt, epochs=np.int64(2), progress=False
    )
    assert hist["epoch"] == [1, 2] and hist[np.int64(-1)]["epoch"] == 2
    with pytest.raises(TypeError, match="expected an int epochs, got float 2.0"):
        fit(model, (x, y), loss_fn=nn.MSELoss(), optimizer=opt, epochs=2.0, progress=False)
