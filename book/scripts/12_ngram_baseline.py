"""Chapter 12's count-based baseline: character n-grams on tiny Shakespeare, n = 1 to 5.

Each order n is fitted on the first 95% of the training text, its add-k constant chosen from
K_GRID on 256 windows of the last 5% (held out from the counts), then refitted with that k on the
whole training text and scored on the chapter's 256 validation windows, with the context cut at
the start of each window as the networks' is (`companion.ngram.NGram.nats`). Counting is exact,
so the numbers are the same on every machine.

Run from the repository root (about a minute; it writes one small CSV):

    .venv/bin/python book/scripts/12_ngram_baseline.py

The file is `book/data/12_ngram.csv` with columns n, k, held_out_nats and val_nats.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from companion.book import load_script
from companion.ngram import NGram
from companion.sweep import write_csv

HERE = Path(__file__).resolve().parent
lm_sweep = sys.modules.get("lm_sweep") or load_script(
    "lm_sweep", "scripts/12_lm_sweep.py", HERE.parent
)

ORDERS = (1, 2, 3, 4, 5)
K_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
HELD_OUT = 0.05  # the last 5% of the training text chooses k
OUT = HERE.parent / "data" / "12_ngram.csv"


def held_out_windows(ids: torch.Tensor, count: int, width: int) -> torch.Tensor:
    """``count`` evenly spaced windows of ``width`` ids from ``ids``: (count, width)."""
    starts = torch.linspace(0, len(ids) - width - 1, count).long()
    return torch.stack([ids[s : s + width] for s in starts.tolist()])


def baseline(n: int, data=None) -> dict[str, float]:
    """One row: the order ``n``, its chosen k and its nats on the held-out and validation
    windows. ``data`` is `lm_sweep.corpus()` (computed when None)."""
    vocab, train_ids, val_windows, _ = data or lm_sweep.corpus()
    cut = int((1 - HELD_OUT) * len(train_ids))
    held = held_out_windows(train_ids[cut:], len(val_windows), val_windows.shape[1])
    scores = NGram(n, len(vocab)).fit(train_ids[:cut]).choose_k(held, K_GRID)
    k = min(scores, key=scores.get)
    model = NGram(n, len(vocab), k=k).fit(train_ids)
    return {"n": n, "k": k, "held_out_nats": scores[k], "val_nats": model.nats(val_windows)}


def main() -> None:
    data = lm_sweep.corpus()
    rows = []
    for n in ORDERS:
        rows.append(baseline(n, data))
        print(f"{n}-gram: k = {rows[-1]['k']:g}, validation {rows[-1]['val_nats']:.4f} nats")
    write_csv(rows, OUT)  # n as it is, the floats to 6 significant digits


if __name__ == "__main__":
    main()
