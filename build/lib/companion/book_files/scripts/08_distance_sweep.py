"""Precompute chapter 8's sweep: sentiment accuracy against the distance of the deciding word.

For every cell (RNN, LSTM, GRU), both initialisations in INITS, every distance in DISTANCES and
every seed in SEEDS, train the chapter's classifier on 1,000 synthetic reviews and measure its
accuracy on 1,000 fresh ones. The hidden sizes (HIDDEN) give the three recurrent layers the same
number of parameters to within 2% (about 6.4k, an LSTM of 32 units). "default" keeps PyTorch's
initialisation (a tanh RNN); "memory" gives each cell its best-known start for a long memory: the
LSTM's forget-gate bias b_f = 2, the GRU's update-gate bias b_z = 2 and, for the RNN, the IRNN
(ReLU, identity recurrent weights, zero biases; Le, Jaitly & Hinton, 2015).

The notebook `book/08_sentiment.ipynb` imports the classifier, the data helpers and
`train_classifier` from this file, loads the result, plots it, and re-runs one point live,
asserting that it matches the stored value.

Run from the repository root (about 4 CPU-minutes; it writes one small CSV):

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python book/scripts/08_distance_sweep.py --jobs 2

The file is `book/data/08_distance_sweep.csv`, with columns cell, init, distance, seed, hidden,
recurrent_params, accuracy and cpu_seconds (the CPU time of the run, one thread).
"""

from __future__ import annotations

import argparse
import csv
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from companion import seed_everything
from companion.data import Vocab, collate_for_packing, synthetic_reviews
from companion.train import evaluate, fit

# The settings of the chapter (the notebook imports them from here).
LENGTH = (32, 40)  # tokens per review, drawn uniformly; longer than the largest distance
N_TRAIN, N_TEST, BATCH = 1000, 1000, 100
EMBEDDING = 16
# One layer of H units on 16 inputs has H(16 + H) + 2H (RNN), 3(...) (GRU) or 4(...) (LSTM)
# weights and biases: 6,480, 6,384 and 6,400 with these sizes.
HIDDEN = {"RNN": 72, "LSTM": 32, "GRU": 38}
EPOCHS, LR, CLIP = 15, 0.01, 1.0
MEMORY_BIAS = 2.0  # initial b_f of the LSTM and b_z of the GRU (chapters 3 and 5)
CELLS = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
INITS = ("default", "memory")
DISTANCES = (20, 30)
SEEDS = (0, 1, 2, 3, 4)
OUT = Path(__file__).resolve().parents[1] / "data" / "08_distance_sweep.csv"
COLUMNS = [
    "cell",
    "init",
    "distance",
    "seed",
    "hidden",
    "recurrent_params",
    "accuracy",
    "cpu_seconds",
]


class SentimentClassifier(nn.Module):
    """Embedding -> packed recurrent layer -> final hidden state -> linear: one logit a review.

    ``cell`` is a class with torch.nn.RNN's constructor; ``**kwargs`` go to it (e.g.
    ``nonlinearity="relu"``). forward: padded ids (N, L) and lengths (N,) -> logits (N,).
    """

    def __init__(
        self,
        cell,
        vocab_size,
        embedding_dim=EMBEDDING,
        hidden_size=32,
        bidirectional=False,
        **kwargs,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=Vocab.PAD)
        self.rnn = cell(
            embedding_dim, hidden_size, batch_first=True, bidirectional=bidirectional, **kwargs
        )
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), 1)

    def forward(self, padded, lengths):
        x = self.embedding(padded)  # (N, L, E)   (8.1)
        packed = pack_padded_sequence(
            x,
            lengths.cpu(),
            batch_first=True,
            enforce_sorted=False,
        )
        _, h_n = self.rnn(packed)  # (8.2)
        if isinstance(h_n, tuple):  # the LSTM's (h_n, c_n)
            h_n = h_n[0]
        if self.rnn.bidirectional:
            summary = torch.cat([h_n[-2], h_n[-1]], dim=1)  # (N, 2H)
        else:
            summary = h_n[-1]  # (N, H)
        return self.head(summary).squeeze(1)  # (8.3)


def open_memory_gate(model, value=MEMORY_BIAS):
    """b_f (LSTM, rows i, f, g, o) or b_z (GRU, rows r, z, n) = ``value``: the second block of
    rows of the bias, all of it in bias_ih. Other layers are left as they are."""
    if type(model.rnn).__name__ in ("LSTM", "GRU"):
        H = model.rnn.hidden_size
        with torch.no_grad():
            for name, p in model.rnn.named_parameters():
                if name.startswith("bias_"):
                    p[H : 2 * H] = value if name.startswith("bias_ih") else 0.0
    return model


def identity_recurrence(model):
    """IRNN: identity recurrent weights and zero biases in every direction of the RNN layer."""
    with torch.no_grad():
        for name, p in model.rnn.named_parameters():
            if name.startswith("weight_hh"):
                p.copy_(torch.eye(p.shape[0]))
            elif name.startswith("bias_"):
                p.zero_()
    return model


def make_classifier(cell, init, vocab_size, bidirectional=False):
    """The chapter's classifier for ``cell`` ("RNN", "LSTM", "GRU") and ``init``."""
    if init not in INITS:
        raise ValueError(f"expected init in {INITS}, got {init!r}")
    relu = cell == "RNN" and init == "memory"
    model = SentimentClassifier(
        CELLS[cell],
        vocab_size,
        hidden_size=HIDDEN[cell],
        bidirectional=bidirectional,
        **({"nonlinearity": "relu"} if relu else {}),
    )
    if init == "memory":
        model = identity_recurrence(model) if cell == "RNN" else open_memory_gate(model)
    return model


def make_vocab():
    """The vocabulary of the training reviews (the same for every distance and seed)."""
    return Vocab.build(tokens for tokens, _ in synthetic_reviews(N_TRAIN, length=LENGTH, seed=0))


def to_batches(reviews, vocab, batch_size=BATCH):
    """[(tokens, label)] -> [(padded (B, L_max), lengths (B,), labels (B,) float)]."""
    pairs = [(vocab.encode(tokens), label) for tokens, label in reviews]
    batches = []
    for start in range(0, len(pairs), batch_size):
        padded, lengths, labels = collate_for_packing(pairs[start : start + batch_size])
        batches.append((padded, lengths, labels.float()))
    return batches


def review_texts(distance, seed):
    """The training and test reviews for ``distance`` and ``seed``: [(tokens, label)] each."""
    train = synthetic_reviews(N_TRAIN, length=LENGTH, distance=distance, seed=2 * seed + 1)
    test = synthetic_reviews(N_TEST, length=LENGTH, distance=distance, seed=2 * seed + 2)
    return train, test


def review_data(distance, seed, vocab):
    """Training batches of 100 and one test batch of 1,000 for ``distance`` and ``seed``."""
    train, test = review_texts(distance, seed)
    return to_batches(train, vocab), to_batches(test, vocab, batch_size=N_TEST)


def accuracy(logits, y):
    return ((logits > 0).float() == y).float().mean()  # a > 0 is p > 0.5


def train_classifier(
    cell, init, distance, seed, vocab, device=None, bidirectional=False, progress=False
):
    """Train the classifier for ``cell`` and ``init`` at ``distance``; returns
    ``(model, test accuracy)``. ``seed`` fixes the data, the initial weights and nothing else
    changes between runs."""
    train_batches, test_batches = review_data(distance, seed, vocab)
    seed_everything(seed)
    model = make_classifier(cell, init, len(vocab), bidirectional=bidirectional).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    fit(
        model,
        train_batches,
        loss_fn=nn.BCEWithLogitsLoss(),
        optimizer=optimizer,
        epochs=EPOCHS,
        clip_grad_norm=CLIP,
        progress=progress,
    )
    scores = evaluate(
        model, test_batches, loss_fn=nn.BCEWithLogitsLoss(), metrics={"accuracy": accuracy}
    )
    return model, scores["accuracy"]


def run_one(cell, init, distance, seed):
    """One row of the table, trained on the CPU with one thread."""
    torch.set_num_threads(1)
    start = time.process_time()
    model, acc = train_classifier(cell, init, distance, seed, make_vocab(), torch.device("cpu"))
    return {
        "cell": cell,
        "init": init,
        "distance": distance,
        "seed": seed,
        "hidden": HIDDEN[cell],
        "recurrent_params": sum(p.numel() for p in model.rnn.parameters()),
        "accuracy": f"{acc:.4f}",
        "cpu_seconds": f"{time.process_time() - start:.1f}",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one thread each")
    parser.add_argument(
        "--resume", type=Path, default=None, help="a CSV of finished runs, which are not repeated"
    )
    args = parser.parse_args()
    runs = [(c, i, d, s) for d in DISTANCES for s in SEEDS for c in CELLS for i in INITS]
    start = time.perf_counter()
    results = {}
    if args.resume is not None:  # every run is independent of the others: keep the finished ones
        with open(args.resume, newline="") as f:
            for row in csv.DictReader(f):
                key = (row["cell"], row["init"], int(row["distance"]), int(row["seed"]))
                results[key] = row
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {run: pool.submit(run_one, *run) for run in runs if run not in results}
        for run, future in futures.items():
            row = results[run] = future.result()
            print(
                f"distance {row['distance']:2d} seed {row['seed']} {row['cell']:4s} "
                f"{row['init']:7s} accuracy {row['accuracy']} ({row['cpu_seconds']} s CPU; "
                f"{time.perf_counter() - start:.0f} s wall so far)",
                flush=True,
            )
    rows = [results[run] for run in runs]
    print(f"{len(rows)} runs, {sum(float(r['cpu_seconds']) for r in rows):.0f} s of CPU time")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
