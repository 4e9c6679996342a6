"""Each model at its best: a learning rate chosen on validation, training until it stops improving.

A comparison that names a winner is fair only when every model gets the same chance: the
initialisation that suits it, a learning rate chosen the same way from the same grid, and
training until its validation loss stops improving (or the same full budget). This module holds
the last two steps, so that every sweep of the book runs them the same way:

- :func:`fit_until_plateau` trains epoch by epoch with :func:`companion.train.fit`, keeps the
  weights of the best validation epoch, and stops after ``patience`` epochs without improvement,
  at ``max_epochs``, or when the loss stops being finite. It says which of the three happened.
- :func:`choose_learning_rate` scores every rate of a grid with a function the caller gives
  (usually: train on a tuning seed, return the best validation loss) and returns the lowest.
- :func:`at_best` runs a whole sweep that way, in parallel processes
  (`companion.sweep.run_all`): every arm on the tuning seed at every rate, then every compared
  seed at the rate chosen for its arm; :func:`save_at_best` stores what it returns.

The rate is chosen on validation data and on a tuning seed of its own, never on the test data
or on the seeds whose scores the chapter compares.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from companion.history import History
from companion.sweep import run_all, write_csv
from companion.train import fit

__all__ = [
    "STOP_REASONS",
    "Stopped",
    "at_best",
    "choose_learning_rate",
    "fit_until_plateau",
    "save_at_best",
]

# Why a run ended: its validation loss stopped improving, it used its whole budget, or its loss
# (or gradient) was no longer a finite number.
STOP_REASONS = ("plateau", "budget", "diverged")


@dataclass
class Stopped:
    """How a :func:`fit_until_plateau` run ended.

    ``history`` holds one record per epoch trained (companion's :class:`History`); ``best_epoch``
    is the epoch (counted from 1) whose weights the model holds at the end, 0 when no epoch
    finished; ``best_val_loss`` its validation loss (``inf`` when no epoch finished); ``reason``
    one of :data:`STOP_REASONS`.
    """

    history: History
    best_epoch: int
    best_val_loss: float
    reason: str

    @property
    def epochs(self) -> int:
        """Epochs trained, including those after the best one."""
        return len(self.history)


def fit_until_plateau(
    model: nn.Module,
    train_data: Iterable[Any],
    *,
    val_data: Iterable[Any],
    max_epochs: int,
    patience: int,
    min_delta: float = 0.0,
    **fit_kwargs: Any,
) -> Stopped:
    """Train ``model`` until its validation loss stops improving; leave it at its best epoch.

    Calls :func:`companion.train.fit` one epoch at a time with the same optimizer and history,
    so the batches and every random draw are those of one ``fit(..., epochs=max_epochs)`` call.

    Args:
        model: the model; on return it holds the weights of the best validation epoch.
        train_data, val_data: as for ``fit`` (``val_data`` is required here).
        max_epochs: the full budget (an int >= 1).
        patience: stop after this many epochs in a row whose validation loss is not below the
            best so far by more than ``min_delta``.
        min_delta: the improvement that counts (absolute, in the loss's units).
        **fit_kwargs: the rest of ``fit``'s arguments (``loss_fn``, ``optimizer``, ...);
            ``progress`` defaults to False.

    Returns:
        A :class:`Stopped`. A ``FloatingPointError`` from ``fit`` ends the run with reason
        ``"diverged"``; the model is then restored to its best epoch (or left as ``fit`` left it
        when no epoch finished).
    """
    if not isinstance(max_epochs, int) or max_epochs < 1:
        raise ValueError(f"fit_until_plateau: expected max_epochs an int >= 1, got {max_epochs!r}")
    if not isinstance(patience, int) or patience < 1:
        raise ValueError(f"fit_until_plateau: expected patience an int >= 1, got {patience!r}")
    fit_kwargs.setdefault("progress", False)
    history, best, best_epoch, best_state = History(), math.inf, 0, None
    reason = "budget"
    for epoch in range(1, max_epochs + 1):
        try:
            fit(model, train_data, val_data=val_data, epochs=1, history=history, **fit_kwargs)
        except FloatingPointError:
            reason = "diverged"
            break
        val_loss = history[-1]["val_loss"]
        if not math.isfinite(val_loss):
            reason = "diverged"
            break
        if val_loss < best - min_delta:
            best, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= patience:
            reason = "plateau"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return Stopped(history, best_epoch, best, reason)


def choose_learning_rate(
    grid: Sequence[float], score: Callable[[float], float]
) -> tuple[float, dict[float, float]]:
    """The rate of ``grid`` with the lowest ``score(lr)``, and every rate's score.

    ``score`` is usually the best validation loss of a run on a tuning seed; a run that diverged
    may return ``inf`` or NaN, and such a rate is never chosen (unless every rate diverged: then
    a ``ValueError`` says so). Ties go to the first rate in ``grid``.
    """
    if len(grid) == 0:
        raise ValueError("choose_learning_rate: expected a non-empty grid of rates, got none")
    scores = {lr: float(score(lr)) for lr in grid}
    finite = {lr: s for lr, s in scores.items() if math.isfinite(s)}
    if not finite:
        raise ValueError(f"choose_learning_rate: every rate of {list(grid)} diverged: {scores}")
    return min(finite, key=finite.get), scores


Run = Callable[..., tuple[Any, dict[str, Any]]]


def at_best(
    arms: Sequence[tuple[Any, ...]],
    run: Run,
    *,
    grid: Sequence[float],
    tune_seed: int,
    seeds: Sequence[int],
    jobs: int = 1,
    describe: Callable[[dict[str, Any]], str] = str,
) -> tuple[dict, dict, dict]:
    """Each arm of a sweep at its best: a rate of ``grid`` chosen on validation, then the seeds.

    Args:
        arms: the compared settings, each a tuple of arguments, e.g. ``("LSTM", "memory")``.
        run: ``run(*arm, seed, lr) -> (curves, row)``, a module-level function (it runs in
            worker processes); ``row["val_mse"]`` or ``row["val_loss"]`` is its best validation
            loss, ``inf`` or NaN when it diverged.
        grid: the learning rates tried for every arm.
        tune_seed: the seed of the tuning runs; it must not be one of ``seeds``, whose scores
            are compared.
        seeds: the seeds run at the chosen rate.
        jobs: worker processes.
        describe: the line printed as each run finishes (its row in, a string out).

    Returns:
        ``(tuning, chosen, results)``: ``{(arm, lr): (curves, row)}`` of the tuning runs, the
        rate chosen per arm ``{arm: lr}``, and ``{(arm, seed): (curves, row)}``.
    """
    if tune_seed in seeds:
        raise ValueError(f"at_best: expected a tuning seed outside {list(seeds)}, got {tune_seed}")

    def line(_run, result):
        return describe(result[1])

    def val_loss(row):
        return float(row.get("val_mse", row.get("val_loss")))

    tune = [(*arm, tune_seed, lr) for arm in arms for lr in grid]
    tuned = run_all(run, tune, jobs=jobs, describe=line)
    tuning = {(arm, lr): tuned[(*arm, tune_seed, lr)] for arm in arms for lr in grid}
    chosen = {}
    for arm in arms:
        score = lambda lr, a=arm: val_loss(tuning[a, lr][1])  # noqa: E731
        chosen[arm], _ = choose_learning_rate(grid, score)
        print(f"{' '.join(map(str, arm))}: learning rate {chosen[arm]:g} chosen", flush=True)
    compare = [(*arm, seed, chosen[arm]) for arm in arms for seed in seeds]
    done = run_all(run, compare, jobs=jobs, describe=line)
    return (
        tuning,
        chosen,
        {(arm, seed): done[(*arm, seed, chosen[arm])] for arm in arms for seed in seeds},
    )


def save_at_best(
    tuning: dict,
    results: dict,
    *,
    order: Callable[[tuple], Any],
    columns: Sequence[str],
    out: Path,
    out_grid: Path,
    out_histories: Path,
    tune_seed: int,
) -> list[dict[str, Any]]:
    """Store what :func:`at_best` returned, ``(tuning, _, results)``, in three files.

    ``out``: the compared runs' rows, in the order of ``order`` (a sort key on ``(arm, seed)``);
    ``out_grid``: the tuning runs' rows (both CSV with ``columns``); ``out_histories``: every
    run's curves as JSON, keyed ``"arm/seed"`` for a compared run and ``"arm/tune_seed/lr"`` for
    a tuning run. Returns the compared rows, in the order written.
    """
    runs = sorted(results, key=order)
    rows = [results[run][1] for run in runs]
    write_csv(rows, out, columns)
    write_csv([row for _, row in tuning.values()], out_grid, columns)
    histories = {"/".join(map(str, (*arm, seed))): results[arm, seed][0] for arm, seed in runs}
    histories |= {
        "/".join(map(str, (*arm, tune_seed, lr))): curves
        for (arm, lr), (curves, _) in tuning.items()
    }
    Path(out_histories).write_text(json.dumps(histories, indent=0) + "\n")
    return rows
