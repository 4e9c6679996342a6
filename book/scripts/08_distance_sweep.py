"""Precompute chapter 8's sweep: sentiment accuracy against the distance of the deciding word.

For every cell (RNN, LSTM, GRU), every distance in DISTANCES and every seed in SEEDS, train the
chapter's classifier on 1,000 synthetic reviews and measure its accuracy on 1,000 fresh ones.
The notebook `book/08_sentiment.ipynb` loads the result, plots it, and re-runs one point live,
asserting that it matches the stored value; the code below must therefore stay identical to
the notebook's (the classifier, the data and the training settings).

Run from the repository root (two to three minutes on one CPU core; it writes one small CSV):

    .venv/bin/python book/scripts/08_distance_sweep.py

The file is `book/data/08_distance_sweep.csv`, with columns cell, distance, seed, accuracy.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from companion import seed_everything
from companion.data import Vocab, collate_for_packing, synthetic_reviews
from companion.train import evaluate, fit

# The settings of the chapter (keep in sync with the notebook).
LENGTH = (32, 40)  # tokens per review, drawn uniformly; longer than the largest distance
N_TRAIN, N_TEST, BATCH = 1000, 1000, 100
EMBEDDING, HIDDEN = 16, 32
EPOCHS, LR, CLIP = 15, 0.01, 1.0
MEMORY_BIAS = 2.0  # initial b_f of the LSTM and b_z of the GRU (chapters 3 and 5)
DISTANCES = (0, 5, 10, 15, 20, 30)
SEEDS = (0, 1, 2)
CELLS = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
OUT = Path(__file__).resolve().parents[1] / "data" / "08_distance_sweep.csv"


class SentimentClassifier(nn.Module):
    """Embedding -> packed recurrent layer -> final hidden state -> linear: one logit a review."""

    def __init__(self, cell, vocab_size, embedding_dim=EMBEDDING, hidden_size=HIDDEN,
                 bidirectional=False):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=Vocab.PAD)
        self.rnn = cell(embedding_dim, hidden_size, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), 1)

    def forward(self, padded, lengths):
        e = self.embedding(padded)
        packed = pack_padded_sequence(e, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h_n = self.rnn(packed)
        if isinstance(h_n, tuple):
            h_n = h_n[0]
        if self.rnn.bidirectional:
            summary = torch.cat([h_n[-2], h_n[-1]], dim=1)
        else:
            summary = h_n[-1]
        return self.head(summary).squeeze(1)


def open_memory_gate(model, value=MEMORY_BIAS):
    """Set the LSTM's forget-gate bias b_f (or the GRU's update-gate bias b_z) to ``value``."""
    if type(model.rnn).__name__ in ("LSTM", "GRU"):
        with torch.no_grad():
            for name, p in model.rnn.named_parameters():
                if name.startswith("bias_"):
                    H = model.rnn.hidden_size
                    p[H:2 * H] = value if name.startswith("bias_ih") else 0.0
    return model


def make_vocab():
    return Vocab.build(tokens for tokens, _ in synthetic_reviews(N_TRAIN, length=LENGTH, seed=0))


def to_batches(reviews, vocab, batch_size=BATCH):
    pairs = [(vocab.encode(tokens), label) for tokens, label in reviews]
    batches = []
    for start in range(0, len(pairs), batch_size):
        padded, lengths, labels = collate_for_packing(pairs[start:start + batch_size])
        batches.append((padded, lengths, labels.float()))
    return batches


def review_data(distance, seed, vocab):
    train = synthetic_reviews(N_TRAIN, length=LENGTH, distance=distance, seed=2 * seed + 1)
    test = synthetic_reviews(N_TEST, length=LENGTH, distance=distance, seed=2 * seed + 2)
    return to_batches(train, vocab), to_batches(test, vocab, batch_size=N_TEST)


def accuracy(logits, y):
    return ((logits > 0).float() == y).float().mean()


def train_classifier(cell, distance, seed, vocab, device, bidirectional=False, progress=False):
    train_batches, test_batches = review_data(distance, seed, vocab)
    seed_everything(seed)
    model = SentimentClassifier(cell, len(vocab), bidirectional=bidirectional)
    model = open_memory_gate(model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    fit(model, train_batches, loss_fn=nn.BCEWithLogitsLoss(), optimizer=optimizer,
        epochs=EPOCHS, clip_grad_norm=CLIP, progress=progress)
    scores = evaluate(model, test_batches, loss_fn=nn.BCEWithLogitsLoss(),
                      metrics={"accuracy": accuracy})
    return model, scores["accuracy"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    device = torch.device("cpu")  # the stored numbers are CPU numbers, like the book's outputs
    # One thread: matrices this small gain nothing from more, and a busy machine slows them down.
    torch.set_num_threads(args.threads)
    vocab = make_vocab()
    rows = []
    start = time.process_time()
    for seed in SEEDS:
        for distance in DISTANCES:
            for name, cell in CELLS.items():
                _, acc = train_classifier(cell, distance, seed, vocab, device)
                rows.append({"cell": name, "distance": distance, "seed": seed,
                             "accuracy": f"{acc:.4f}"})
                print(f"seed {seed} distance {distance:2d} {name:4s} accuracy {acc:.4f} "
                      f"({time.process_time() - start:.0f} s CPU)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["cell", "distance", "seed", "accuracy"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
