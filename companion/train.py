"""A training loop for the book's recurrent models: progress bar, history, TBPTT.

Every chapter trains with the same few lines::

    history = fit(model, train_loader, loss_fn=nn.MSELoss(), optimizer=opt, epochs=20,
                  val_data=val_loader, clip_grad_norm=1.0)
    history.plot()
    save_checkpoint("lstm.pt", model, opt, history, config={"hidden_size": 64})

The loop is deliberately small enough to read in one sitting (as in nanoGPT's ``train.py``); what
it adds to the textbook loop are the things recurrent networks need: gradient clipping with the
norm recorded before clipping (exploding gradients show up in ``history["grad_norm"]``), truncated
backpropagation through time with a carried state (``stateful=True``), closure optimizers such as
L-BFGS, and a loud failure, with the weights untouched, when the loss or a gradient is not finite.
Checkpoints live in :mod:`companion.checkpoints`; ``save_checkpoint`` and ``load_checkpoint`` are
importable from here too.
How a batch reaches the model (the last element is the target) is :mod:`companion.batches`.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence
from tqdm import tqdm

from companion import distributed
from companion._autocast import amp_setup, autocast
from companion._checks import check_int, check_real, describe
from companion.batches import as_batches, batch_size, detach_state, split_batch, to_device
from companion.checkpoints import load_checkpoint, save_checkpoint
from companion.device import model_device
from companion.history import History

__all__ = [
    "History",
    "fit",
    "evaluate",
    "predict",
    "save_checkpoint",
    "load_checkpoint",
    "detach_state",
    "to_device",
]

#: ``metric(prediction, target) -> number``: the mean over the batch of some score.
Metric = Callable[[Any, Any], Union[float, Tensor]]
PathLike = Union[str, "os.PathLike[str]"]
DeviceLike = Union[str, torch.device, None]


# --------------------------------------------------------------------------------------------------
# Small helpers: devices, states, batches
# --------------------------------------------------------------------------------------------------


def _resolve_device(model: nn.Module, device: DeviceLike) -> torch.device:
    if device is None:
        return model_device(model)
    device = torch.device(device)
    model.to(device)
    return device


def _add_note(err: BaseException, note: str) -> None:
    """Add ``note`` to the traceback of ``err`` (Python 3.11+), keeping its type; before 3.11,
    which shows no notes, print it to stderr instead."""
    if hasattr(err, "add_note"):
        err.add_note(note)
    else:
        print(note, file=sys.stderr)


@contextlib.contextmanager
def _blame(what: str) -> Iterator[None]:
    """Name the user's function ``what`` (``loss_fn``, ``metric 'acc'``) in any error it raises."""
    try:
        yield
    except Exception as err:
        _add_note(err, f"raised by {what}")
        raise


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block is done, then deliver it as it would have been.

    An optimizer step updates the parameters one after another; a KeyboardInterrupt in the
    middle would leave some stepped and others not. Outside the main thread (where Python
    delivers signals only to the main thread anyway) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            if callable(previous):  # Python's default raises KeyboardInterrupt here
                previous(signal.SIGINT, held[0])
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt


def _forward(
    model: nn.Module, inputs: tuple[Any, ...], state: Any, stateful: bool, where: str
) -> tuple[Any, Any]:
    if not stateful:
        return model(*inputs), None
    out = model(*inputs, state)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(
            f"{where}: stateful=True expects model(x, state) to return "
            f"(prediction, state), got {describe(out)}"
        )
    return out[0], out[1]


def _scalar(value: Any, what: str) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"expected {what} to be a scalar, got {describe(value)}")
        return float(value.item())
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"expected {what} to be a number or a scalar tensor, got {describe(value)}"
        ) from err


def _for_metric(pred: Any) -> Any:
    # Under autocast the prediction may be bfloat16/float16; metrics should not have to care.
    if isinstance(pred, Tensor):
        pred = pred.detach()
        return pred.float() if pred.is_floating_point() and pred.dtype != torch.float64 else pred
    return pred


def _check_metrics(metrics: Mapping[str, Metric] | None, where: str) -> dict[str, Metric]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping) or not all(
        isinstance(k, str) and callable(v) for k, v in metrics.items()
    ):
        raise TypeError(
            f"{where}: expected metrics to be a dict of name -> callable(pred, y), got {metrics!r}"
        )
    return dict(metrics)


# --------------------------------------------------------------------------------------------------
# Training: argument checks, one step, one epoch, the loop
# --------------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """What every step of one :func:`fit` needs, checked once by :func:`_prepare_run`."""

    model: nn.Module
    loss_fn: Callable[[Any, Any], Tensor]
    optimizer: torch.optim.Optimizer
    params: list[nn.Parameter]
    param_names: list[str]
    device: torch.device
    amp_dtype: torch.dtype | None
    scaler: Any
    clip: float | None
    stateful: bool
    use_closure: bool
    metrics: dict[str, Metric]
    replicas: distributed.Replicas  # the processes training this model: one, or DDP's ranks

    @property
    def evaluation(self) -> dict[str, Any]:
        """The arguments of :func:`evaluate` that validation takes from the run."""
        return {"metrics": self.metrics, "device": self.device, "stateful": self.stateful}


def _check_clip(clip_grad_norm: Any) -> float | None:
    if clip_grad_norm is None:
        return None
    rule = "a positive number or None"
    return check_real("fit", "clip_grad_norm", clip_grad_norm, low=0, low_open=True, rule=rule)


_NOTHING = object()  # what next() returns from an iterator with no batch


def _check_not_empty(data: Iterable[Any], name: str) -> None:
    """Refuse data without a single batch now, not after an epoch of training."""
    if isinstance(data, Sized):
        empty = len(data) == 0
    else:  # re-iterable (checked before): a fresh iterator costs one batch
        empty = next(iter(data), _NOTHING) is _NOTHING
    if empty:
        raise ValueError(f"fit: {name} yielded no batches; expected at least one")


def _parameter_names(model: nn.Module, params: list[nn.Parameter]) -> list[str]:
    names = {id(p): name for name, p in model.named_parameters()}
    return [names.get(id(p), f"optimizer parameter {i}") for i, p in enumerate(params)]


def _prepare_run(
    model: nn.Module,
    optimizer: Any,
    loss_fn: Any,
    clip_grad_norm: Any,
    device: DeviceLike,
    metrics: Any,
    stateful: bool,
    amp: Any,
    closure: bool | None,
    ddp: bool = False,
) -> _Run:
    if not callable(loss_fn):
        raise TypeError(f"fit: expected loss_fn to be callable(prediction, y), got {loss_fn!r}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"fit: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
    clip = _check_clip(clip_grad_norm)
    metrics = _check_metrics(metrics, "fit")
    device = _resolve_device(model, device)
    model = distributed.wrap(model, device) if ddp else model
    replicas = distributed.replicas(model)
    use_closure = isinstance(optimizer, torch.optim.LBFGS) if closure is None else bool(closure)
    if use_closure and replicas.world_size > 1:
        raise ValueError(
            "fit: expected a step without a closure under DistributedDataParallel, got a closure "
            "optimizer (L-BFGS): its line search compares each rank's own loss, so the ranks "
            "would take different steps. Train full-batch on one process"
        )
    amp_dtype, scaler = amp_setup(amp, device, use_closure)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    names = _parameter_names(distributed.unwrap(model), params)
    return _Run(
        model=model,
        loss_fn=loss_fn,
        optimizer=optimizer,
        params=params,
        param_names=names,
        device=device,
        amp_dtype=amp_dtype,
        scaler=scaler,
        clip=clip,
        stateful=stateful,
        use_closure=use_closure,
        metrics=metrics,
        replicas=replicas,
    )


def _grad_norm(run: _Run, at: str) -> Tensor:
    """Total 2-norm of all gradients before clipping, clipping them to ``run.clip`` if set.

    Unless a ``GradScaler`` skips such steps itself, a non-finite norm raises (see
    :func:`_nonfinite_grads`) before the gradients are clipped or any weight moves."""
    grads = [p.grad for p in run.params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    check = run.scaler is None
    if run.clip is not None:
        try:  # error_if_nonfinite checks before it scales the gradients
            return torch.nn.utils.clip_grad_norm_(run.params, run.clip, error_if_nonfinite=check)
        except RuntimeError as err:
            if "non-finite" not in str(err):
                raise
            raise _nonfinite_grads(run, _total_norm(grads).item(), at) from None
    norm = _total_norm(grads)
    if check and not torch.isfinite(norm):
        raise _nonfinite_grads(run, norm.item(), at)
    return norm


def _total_norm(grads: list[Tensor]) -> Tensor:
    norms = [torch.linalg.vector_norm(g.detach(), 2.0) for g in grads]
    return torch.linalg.vector_norm(torch.stack(norms), 2.0)


def _nonfinite_grads(run: _Run, norm: float, at: str) -> FloatingPointError:
    bad = [
        name
        for p, name in zip(run.params, run.param_names)
        if p.grad is not None and not torch.isfinite(p.grad).all()
    ]
    return FloatingPointError(
        f"fit: the gradient norm became {norm} at {at}, with non-finite gradients in "
        f"{', '.join(bad) or 'no single parameter (the sum overflowed)'}; the weights are as they "
        f"were before this step. Look for an operation without a finite derivative at some input "
        f"(sqrt or log at 0), or try a lower learning rate or clip_grad_norm=1.0"
    )


def _nonfinite_loss(value: float | str, at: str, clip: float | None) -> FloatingPointError:
    advice = (
        "try a lower learning rate"
        if clip is not None
        else "try a lower learning rate or clip_grad_norm=1.0"
    )
    return FloatingPointError(f"fit: the training loss became {value} at {at}; {advice}")


def _forward_loss(
    run: _Run, inputs: tuple[Any, ...], y: Any, state: Any, at: str
) -> tuple[Tensor, float, Any, Any]:
    """Zero the grads, run the model on one batch, and refuse a non-finite loss."""
    run.optimizer.zero_grad(set_to_none=True)
    with autocast(run.device, run.amp_dtype):
        pred, new_state = _forward(run.model, inputs, state, run.stateful, "fit")
        with _blame("loss_fn"):
            loss = run.loss_fn(pred, y)
    value = _scalar(loss, "the value of loss_fn")
    bad = run.replicas.first_nonfinite(value)  # every rank refuses, or none: see distributed
    if bad is not None:
        if run.replicas.world_size > 1:
            at = f"{at} on rank {bad} of {run.replicas.world_size}"
        raise _nonfinite_loss(value if bad == run.replicas.rank else "non-finite", at, run.clip)
    return loss, value, pred, new_state


def _train_step(
    run: _Run, inputs: tuple[Any, ...], y: Any, state: Any, at: str
) -> tuple[float, Any, Any, Tensor]:
    """One optimizer step on one batch: with a closure (L-BFGS), a ``GradScaler`` (float16), or
    plainly. Returns the loss, the prediction, the model's new state and the gradient norm.

    A non-finite loss or gradient raises ``FloatingPointError`` with the weights as they were
    before the step: the plain and scaler steps check before ``optimizer.step()``; a closure step
    may have moved the weights during its line search, so they are put back."""
    if run.use_closure:
        evaluations: list[tuple[float, Any, Any, Tensor]] = []

        def step_closure() -> Tensor:
            loss, value, pred, new_state = _forward_loss(run, inputs, y, state, at)
            loss.backward()
            evaluations.append((value, pred, new_state, _grad_norm(run, at)))
            return loss

        before = [p.detach().clone() for p in run.params]
        try:
            run.optimizer.step(step_closure)
        except BaseException:
            with torch.no_grad():
                for p, saved in zip(run.params, before):
                    p.copy_(saved)
            raise
        value, pred, _, norm = evaluations[0]  # the loss and norm at the step started
        return value, pred, evaluations[-1][2], norm  # the state at it ended

    loss, value, pred, new_state = _forward_loss(run, inputs, y, state, at)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)  # so the norm and the clipping see true grads
        norm = _grad_norm(run, at)
        with _sigint_deferred():  # all parameters stepped, or none
            run.scaler.step(run.optimizer)  # skipped if the grads overflowed
            run.scaler.update()
    else:
        loss.backward()
        norm = _grad_norm(run, at)
        with _sigint_deferred():  # all parameters stepped, or none
            run.optimizer.step()
    return value, pred, new_state, norm


@contextlib.contextmanager
def _short_batch_hint(
    stateful: bool, n: int, previous: int | None, index: int, where: str
) -> Iterator[None]:
    """A carried state has the previous batch's size. When the model fails on a batch of another
    size, say so: the model's own error rarely mentions the state it was given."""
    try:
        yield
    except (RuntimeError, ValueError) as err:
        if not stateful or previous is None or n == previous:
            raise
        raise ValueError(
            f"{where}: stateful=True carries the state from batch to batch, and batch {index} "
            f"has {n} samples after batches of {previous} (a short last batch?). Use "
            f"DataLoader(..., drop_last=True) or a batch size that divides the number of "
            f"sequences. The model said: {err}"
        ) from err


@dataclass
class _Cursor:
    """Where the loop is (epoch, batch, phase), for the messages of an interrupted or failed run."""

    epoch: int
    batch: int = -1
    phase: str = "training"

    def describe(self) -> str:
        at = f"batch {self.batch}" if self.phase == "training" else self.phase
        return f"epoch {self.epoch} ({at})"


def _train_epoch(
    run: _Run, train_data: Iterable[Any], epoch: int, cursor: _Cursor, with_metrics: bool
) -> tuple[dict[str, Any], dict[str, float]]:
    """One pass over ``train_data``: the epoch's losses and metrics, and its step statistics
    (mean gradient norm, learning rate), which go after the validation scores in the record."""
    run.model.train()
    state, previous = None, None  # each epoch starts the sequences afresh
    loss_sum, count = 0.0, 0
    metric_sums = dict.fromkeys(run.metrics, 0.0) if with_metrics else {}
    norms: list[Tensor] = []
    distributed.start_epoch(train_data, epoch)
    # Epochs and batches are counted from 1 in every message, as in History and the progress bar.
    for index, batch in enumerate(train_data, start=1):
        cursor.batch = index
        inputs, y = split_batch(batch, "fit")
        inputs, y = to_device(inputs, run.device), to_device(y, run.device)
        n = batch_size(y)
        with _short_batch_hint(run.stateful, n, previous, index, "fit"):
            value, pred, new_state, norm = _train_step(
                run, inputs, y, state, f"epoch {epoch}, batch {index}"
            )
        previous = n
        state = detach_state(new_state) if run.stateful else None
        loss_sum += value * n
        count += n
        norms.append(norm.detach().float().cpu())  # the loss's .item() synced already
        with torch.no_grad():
            for name in metric_sums:
                with _blame(f"metric {name!r}"):
                    score = run.metrics[name](_for_metric(pred), y)
                metric_sums[name] += _scalar(score, f"metric {name!r}") * n
    totals, count = run.replicas.sum_over_ranks({"loss": loss_sum, **metric_sums}, count)
    loss_sum, metric_sums = totals.pop("loss"), totals  # DDP: over all ranks
    if count == 0:
        raise ValueError(f"fit: train_data yielded no batches in epoch {epoch}")
    norm_values = torch.stack(norms)
    norm_values = norm_values[torch.isfinite(norm_values)]  # steps a GradScaler skipped
    record: dict[str, Any] = {"epoch": epoch, "train_loss": loss_sum / count}
    record.update({f"train_{k}": s / count for k, s in metric_sums.items()})
    steps = {
        "grad_norm": norm_values.mean().item() if norm_values.numel() else math.nan,
        "lr": float(run.optimizer.param_groups[0]["lr"]),
    }
    return record, steps


def _interrupted(err: KeyboardInterrupt, history: History, cursor: _Cursor, done: int) -> None:
    """Say what a Ctrl-C left behind, and attach the history to the KeyboardInterrupt."""
    err.history = history  # type: ignore[attr-defined]
    print(
        f"fit: interrupted in {cursor.describe()}, at a step boundary (the model holds the "
        f"weights of the last whole step); the history of the {done} completed "
        f"epoch{'s' if done != 1 else ''} is the exception's .history and the history passed "
        f"in (history.interrupted = True)",
        file=sys.stderr,
    )


def _step_scheduler(scheduler: Any, record: Mapping[str, Any]) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(record.get("val_loss", record["train_loss"]))
    else:
        scheduler.step()


def fit(
    model: nn.Module,
    train_data: Iterable[Any],
    *,
    loss_fn: Callable[[Any, Any], Tensor],
    optimizer: torch.optim.Optimizer,
    epochs: int,
    val_data: Iterable[Any] | None = None,
    clip_grad_norm: float | None = None,
    device: DeviceLike = None,
    metrics: Mapping[str, Metric] | None = None,
    progress: bool = True,
    stateful: bool = False,
    amp: bool | torch.dtype = False,
    scheduler: Any = None,
    closure: bool | None = None,
    history: History | None = None,
    ddp: bool = False,
) -> History:
    """Train ``model`` for ``epochs`` passes over ``train_data`` and return the :class:`History`.

    Args:
        model: called as ``model(x)`` (or ``model(x1, ..., xk)``, see the module docstring) and
            returning the prediction; with ``stateful=True`` called as ``model(x, state)`` and
            returning ``(prediction, state)``.
        train_data: re-iterable of batches ``(x, y)``, e.g. a ``DataLoader`` yielding
            x ``(N, T, H_in)`` and y ``(N, ...)``; or a single batch ``(x, y)`` of tensors.
        loss_fn: ``loss_fn(prediction, y) -> scalar tensor``, a batch mean (``nn.MSELoss()``).
        optimizer: any ``torch.optim`` optimizer; ``torch.optim.LBFGS`` is stepped with a closure.
        epochs: number of passes over ``train_data`` (an int >= 0).
        val_data: batches to compute ``val_loss`` (and ``val_<metric>``) on after every epoch;
            it must hold at least one batch.
        clip_grad_norm: clip the total gradient norm to this positive number
            (``clip_grad_norm_``).
        device: where to train; the model is moved there. Default: the device of the model's
            first parameter, so ``model.to(device)`` before ``fit`` is all it takes.
        metrics: ``{name: metric(prediction, y) -> float}``, batch means. Computed on ``val_data``
            after each epoch (``val_<name>``) or, without it, as a running mean over the training
            batches of the epoch (``train_<name>``, as Keras does: no extra pass).
        progress: show one ``tqdm`` bar over epochs (on stderr) with the last losses.
        stateful: truncated BPTT. The state returned for one batch is detached and passed to the
            model with the next batch; it is reset to ``None`` at the start of every epoch (and of
            the validation pass). Batches must then be consecutive chunks of the same sequences,
            as ``companion.data.lm_batches`` yields them, all of one size.
        amp: mixed precision on CUDA: ``True`` autocasts to bfloat16 where the GPU supports it,
            else to float16 with a ``GradScaler``; ``torch.float16`` / ``torch.bfloat16`` choose.
            On the CPU or MPS it warns and trains in float32 (CPU bfloat16 autocast is slow for
            recurrent layers and would change the book's printed numbers).
        scheduler: a learning-rate scheduler stepped once per epoch, after validation;
            ``ReduceLROnPlateau`` is given ``val_loss`` (``train_loss`` without validation).
        closure: step with ``optimizer.step(closure)``; ``None`` means "if the optimizer is
            ``torch.optim.LBFGS``". The recorded loss and gradient norm are those of the first
            evaluation, at the parameters the step started from.
        history: a history to append to (resuming training); epochs and times continue from its
            last record. To resume exactly, restore it with :func:`load_checkpoint`
            (``restore_rng=True``, with the scheduler).
        ddp: wrap the model in ``DistributedDataParallel`` for this run (torch.distributed must
            be initialised). A model that is a ``DistributedDataParallel`` already is trained
            data-parallel without it: progress on rank 0, losses and non-finite checks agreed
            by all ranks; see :mod:`companion.distributed`, whose ``shard_batches`` splits the
            data.

    Returns:
        The history, one record per completed epoch (see :class:`History`); ``lr`` is the learning
        rate the epoch's last step used, ``grad_norm`` the mean over the epoch's steps of the total
        gradient norm before clipping (steps a float16 ``GradScaler`` skipped for overflow are left
        out).

    Ctrl-C:
        A Ctrl-C (SIGINT) that comes during an optimizer step is held until the step is whole,
        so the model never holds half-stepped weights. Then, as in Keras and Lightning (which
        exits after its shutdown), the ``KeyboardInterrupt`` goes on to the caller: a loop over
        runs stops instead of starting the next one. Before it does, ``fit`` marks the history
        ``interrupted=True`` (the ``history`` passed in, and the exception's ``history``
        attribute, hold the completed epochs) and prints one line saying where it stopped. To
        keep going after a Ctrl-C, catch it with ``except KeyboardInterrupt as stop`` and
        read ``stop.history``.

    On errors:
        Whatever the error, the epochs completed before it are kept: in ``history`` if one was
        passed in, and always as the ``history`` attribute of the raised exception. An error
        raised by ``loss_fn`` or a metric keeps its type, and its traceback names the function
        (``raised by metric 'acc'``), the epoch and the phase (``fit: in epoch 3
        (validation)``) (on Python before 3.11, these lines go to stderr).

    Raises:
        FloatingPointError: when a training loss or the gradient norm is NaN or infinite, naming
            epoch and batch (and the parameters whose gradients are not finite); the parameters
            are left as they were before that batch's step, with every optimizer (with a
            ``GradScaler``, non-finite gradients are its business: it skips the step).
        ValueError: for a stateful run whose batches change size, and for empty data.
    """
    epochs = check_int("fit", "epochs", epochs, minimum=0)
    run = _prepare_run(
        model, optimizer, loss_fn, clip_grad_norm, device, metrics, stateful, amp, closure, ddp
    )
    train_data, val_data = _check_data(train_data, val_data, epochs)
    with _Session(model, history, epochs, progress and run.replicas.is_main) as session:
        for epoch in session.epochs():
            record, steps = _train_epoch(run, train_data, epoch, session.cursor, val_data is None)
            if val_data is not None:
                session.cursor.phase = "validation"
                scores = evaluate(run.model, val_data, loss_fn=loss_fn, **run.evaluation)
                record.update({f"val_{k}": v for k, v in scores.items()})
            record.update(steps)  # grad_norm and lr after the scores: History.keys() shows them
            if scheduler is not None:
                session.cursor.phase = "the scheduler step"
                with _sigint_deferred():
                    _step_scheduler(scheduler, record)
            session.log(record)
    return session.history


def _check_data(
    train_data: Any, val_data: Any, epochs: int
) -> tuple[Iterable[Any], Iterable[Any] | None]:
    """Both data sets as re-iterables of batches, each holding at least one batch."""
    train_data = as_batches(train_data, "fit", "train_data", epochs)
    if val_data is not None:
        val_data = as_batches(val_data, "fit", "val_data", epochs)
        _check_not_empty(val_data, "val_data")
    if epochs:
        _check_not_empty(train_data, "train_data")
    return train_data, val_data


class _Session:
    """The bookkeeping around :func:`fit`'s loop, so that the loop can be the function.

    It continues ``history`` (epochs and times from its last record), draws the progress bar,
    knows where the loop is (:class:`_Cursor`), and on the way out puts the model back in the
    mode it came in and says what an error or a Ctrl-C left: the history is kept on the
    exception, and a Ctrl-C marks it ``interrupted``.
    """

    def __init__(self, model: nn.Module, history: History | None, epochs: int, shown: bool):
        self.model, self.was_training = model, model.training
        self.history = History() if history is None else history
        self.history.interrupted = False
        last = self.history[-1] if len(self.history) else {}
        self.first_epoch = int(last["epoch"]) + 1 if last else 1
        self.time_offset = float(last.get("time", 0.0))
        self.n_epochs = epochs
        self.cursor = _Cursor(self.first_epoch - 1)
        # 80 columns, the width of the book's pages: tqdm narrows the bar to fit.
        self.bar = tqdm(total=epochs, desc="fit", unit="epoch", disable=not shown, ncols=80)
        self.start = time.perf_counter()

    def __enter__(self) -> _Session:
        return self

    def epochs(self) -> Iterator[int]:
        """The numbers of the epochs to run, 1-based and continuing the history."""
        for epoch in range(self.first_epoch, self.first_epoch + self.n_epochs):
            self.cursor.epoch, self.cursor.phase = epoch, "training"
            yield epoch

    def log(self, record: dict[str, Any]) -> None:
        """Stamp ``record`` with the training time so far, keep it, and show its losses."""
        record["time"] = self.time_offset + time.perf_counter() - self.start
        self.history.append(record)
        losses = {"loss": record["train_loss"], "val_loss": record.get("val_loss")}
        shown = {k: f"{v:.3g}" for k, v in losses.items() if v is not None}
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(1)

    def __exit__(self, kind: Any, err: BaseException | None, traceback: Any) -> None:
        self.bar.close()
        self.model.train(self.was_training)
        done = len(self.history) - (self.first_epoch - 1)
        if isinstance(err, KeyboardInterrupt):
            self.history.interrupted = True
            _interrupted(err, self.history, self.cursor, done)
        elif isinstance(err, Exception):
            with contextlib.suppress(AttributeError):  # a few C-level exceptions take none
                err.history = self.history  # type: ignore[attr-defined]
            _add_note(
                err,
                f"fit: in {self.cursor.describe()}; the history of the {done} completed "
                f"epoch{'s' if done != 1 else ''} is kept (the exception's .history, and the "
                f"history passed in)",
            )


# --------------------------------------------------------------------------------------------------
# Evaluation and prediction
# --------------------------------------------------------------------------------------------------


def evaluate(
    model: nn.Module,
    data: Iterable[Any],
    *,
    loss_fn: Callable[[Any, Any], Tensor],
    metrics: Mapping[str, Metric] | None = None,
    device: DeviceLike = None,
    stateful: bool = False,
) -> dict[str, float]:
    """Mean loss and metrics of ``model`` over ``data``, without gradients and in eval mode.

    Args:
        model, loss_fn, metrics, device, stateful: as in :func:`fit`.
        data: re-iterable of ``(x, y)`` batches, or one batch ``(x, y)`` of tensors.

    Returns:
        ``{"loss": ..., **{name: ...}}``: per-batch values averaged with weights the batch sizes
        (the first dimension of ``y``), so a short last batch counts for what it holds. The
        model's train/eval mode is restored afterwards.
    """
    where = "evaluate"
    metrics = _check_metrics(metrics, where)
    batches = as_batches(data, where, "data")
    device = _resolve_device(model, device)
    was_training = model.training
    model.eval()
    sums = dict.fromkeys(["loss", *metrics], 0.0)
    count = 0
    try:
        with torch.no_grad():
            state, previous = None, None
            for index, batch in enumerate(batches):
                inputs, y = split_batch(batch, where)
                inputs, y = to_device(inputs, device), to_device(y, device)
                n = batch_size(y)
                with _short_batch_hint(stateful, n, previous, index, where):
                    pred, new_state = _forward(model, inputs, state, stateful, where)
                previous = n
                state = new_state if stateful else None
                with _blame("loss_fn"):
                    loss = loss_fn(pred, y)
                sums["loss"] += _scalar(loss, "the value of loss_fn") * n
                for name, metric in metrics.items():
                    with _blame(f"metric {name!r}"):
                        score = metric(_for_metric(pred), y)
                    sums[name] += _scalar(score, f"metric {name!r}") * n
                count += n
    finally:
        model.train(was_training)
    sums, count = distributed.replicas(model).sum_over_ranks(sums, count)  # DDP: over all ranks
    if count == 0:
        raise ValueError("evaluate: data yielded no batches")
    return {name: total / count for name, total in sums.items()}


def _predict_inputs(batch: Any) -> tuple[Any, ...]:
    if isinstance(batch, (Tensor, PackedSequence)):
        return (batch,)
    if isinstance(batch, (tuple, list)) and len(batch) == 1:
        only = batch[0]
        if isinstance(only, (tuple, list)) and not isinstance(only, PackedSequence):
            return tuple(only)
        return (only,)
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return split_batch(batch, "predict")[0]
    raise TypeError(f"predict: expected each batch to be x, (x,) or (x, y), got {describe(batch)}")


def predict(
    model: nn.Module,
    x_or_data: Tensor | Iterable[Any],
    *,
    device: DeviceLike = None,
    stateful: bool = False,
    dim: int = 0,
) -> Tensor:
    """Predictions of ``model`` in eval mode without gradients, gathered on the CPU.

    Args:
        model: as in :func:`fit`. If it returns a tuple (``nn.LSTM`` returns
            ``(output, (h_n, c_n))``, a stateful model ``(prediction, state)``), its first element
            is the prediction.
        x_or_data: one input tensor, e.g. ``(N, T, H_in)``, or an iterable of batches, each ``x``,
            ``(x,)`` (a ``DataLoader`` over ``TensorDataset(x)``) or ``(x, y)`` whose ``y`` is
            ignored. A tuple/list batch of two or more elements follows :func:`fit`'s rule (last
            element is the target), so inputs such as ``(padded, lengths)`` come as
            ``((padded, lengths),)`` or ``((padded, lengths), y)``.
        device: as in :func:`fit`.
        stateful: carry the (detached) state from batch to batch, starting from ``None``.
        dim: the dimension to concatenate batches along (``1`` for time-major ``(T, N, ...)``).

    Returns:
        The predictions of all batches concatenated along ``dim``, on the CPU.
    """
    device = _resolve_device(model, device)
    batches: Iterable[Any] = [x_or_data] if isinstance(x_or_data, Tensor) else x_or_data
    was_training = model.training
    model.eval()
    outputs: list[Tensor] = []
    try:
        with torch.no_grad():
            state = None
            for batch in batches:
                inputs = to_device(_predict_inputs(batch), device)
                if stateful:
                    pred, state = _forward(model, inputs, state, True, "predict")
                else:
                    pred = model(*inputs)
                    if isinstance(pred, (tuple, list)) and not isinstance(pred, PackedSequence):
                        pred = pred[0]
                if not isinstance(pred, Tensor):
                    raise TypeError(
                        f"predict: expected the model to return a tensor, got {describe(pred)}"
                    )
                outputs.append(pred.detach().cpu())
    finally:
        model.train(was_training)
    if not outputs:
        raise ValueError("predict: x_or_data yielded no batches")
    return torch.cat(outputs, dim=dim)
