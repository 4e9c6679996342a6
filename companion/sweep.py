"""The plumbing every sweep script shares: independent runs in a process pool, one progress line
per finished run, and the table written as CSV.

A sweep is a list of runs, each a tuple of arguments (cell, init, length, seed, ...), and a
function that trains one run and returns its result. :func:`run_all` runs them, ``jobs`` at a
time, and prints a line as each result comes in; :func:`write_csv` writes the rows. The scripts
keep what is theirs (the model, the training, the columns); this module keeps only what they all
wrote alike, in the installed package, so that it is there on Colab too.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from companion._checks import check_int

__all__ = ["run_all", "write_csv"]

Run = TypeVar("Run", bound=Hashable)


def run_all(
    run_one: Callable[..., Any],
    runs: Iterable[Run],
    *,
    jobs: int = 1,
    describe: Callable[[Run, Any], str] | None = None,
    first: Callable[[Run], Any] | None = None,
    done: Mapping[Run, Any] | None = None,
) -> dict[Run, Any]:
    """``{run: run_one(*run)}`` for every run, ``jobs`` processes at a time, in ``runs``' order.

    Args:
        run_one: trains one run; a module-level function (the pool pickles it), which should
            set its own thread count (``torch.set_num_threads(1)``) if it wants one.
        runs: tuples of ``run_one``'s arguments.
        jobs: processes in the pool; 1 runs everything in one worker process as well, so that
            each run starts from the same state whatever ``jobs`` is.
        describe: ``describe(run, result)`` is the progress line of a finished run, printed with
            the wall time so far; None prints nothing.
        first: a sort key for the submission order, e.g. ``lambda run: -run[2]`` to start the
            longest runs first, so that the pool is not left waiting for one long run at the end.
        done: results already known (a resumed sweep): these runs are not repeated.

    Returns:
        Every run's result, keyed by run, in the order of ``runs``.
    """
    runs = list(runs)
    jobs = check_int("run_all", "jobs", jobs)
    done = dict(done or {})
    todo = [run for run in runs if run not in done]
    order = sorted(todo, key=first) if first is not None else todo
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {run: pool.submit(run_one, *run) for run in order}
        for run, future in futures.items():
            done[run] = future.result()
            if describe is not None:
                wall = time.perf_counter() - start
                print(f"{describe(run, done[run])} [{wall:.0f} s wall so far]", flush=True)
    return {run: done[run] for run in runs}


def write_csv(
    rows: Sequence[Mapping[str, Any]], out: Path | str, columns: Sequence[str] | None = None
) -> Path:
    """``rows`` as a CSV file at ``out`` (its folder made if needed), one line said on stdout.

    Columns are ``columns``, or the first row's keys in their order. Floats are written to 6
    significant digits (``f"{v:.6g}"``); every other value as ``str`` writes it, so rows that
    hold formatted strings already are written as they are. Returns the path.
    """
    out = Path(out)
    if not rows and columns is None:
        raise ValueError("write_csv: expected at least one row, or the columns, got neither")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns or rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )
    print(f"wrote {len(rows)} rows to {out}")
    return out
