"""Precompute chapter 8's sweep: sentiment accuracy against the distance of the deciding word.

For every cell (RNN, LSTM, GRU), both initialisations in INITS and every distance in DISTANCES,
train the chapter's classifier on 1,000 synthetic reviews and measure its accuracy on 1,000
fresh ones, each cell at its best, the same way for all: Adam's learning rate is chosen from
LR_GRID by the validation loss (500 reviews of their own) of a run on TUNE_SEED, then the five
SEEDS train at that rate, each until its validation loss has not improved for PATIENCE epochs
or for MAX_EPOCHS, keeping its best epoch. The hidden sizes (HIDDEN) give the three recurrent
layers the same number of parameters to within 2% (about 6.4k, an LSTM of 32 units). "default"
keeps PyTorch's initialisation (a tanh RNN); "memory" gives each cell its best-known start for a
long memory: the LSTM's forget-gate bias b_f = 2, the GRU's update-gate bias b_z = 2 and, for
the RNN, the IRNN (ReLU, identity recurrent weights, zero biases; Le, Jaitly & Hinton, 2015).

The notebook `book/08_sentiment.ipynb` imports the classifier, the data helpers and
`train_classifier` from this file, loads the results, plots them, compares models on the same
test reviews (McNemar's test, from the stored hits) and re-runs points live.

Run from the repository root (about 25 CPU-minutes):

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python book/scripts/08_distance_sweep.py --jobs 2

It writes `book/data/08_distance_sweep.csv` (one row per run: cell, init, distance, seed, lr,
hidden, recurrent_params, val_loss, accuracy, epochs, best_epoch, stop, cpu_seconds, the CPU
time of the run on one thread), `book/data/08_distance_lr_grid.csv` (the tuning runs, the same
columns) and `book/data/08_distance_hits.json` ({"cell/init/distance/seed": which test reviews
the run got right, 4 a hex digit}).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from companion import seed_everything
from companion.data import Vocab, collate_for_packing, synthetic_reviews
from companion.init import identity_init, set_gate_bias
from companion.selection import at_best, choose_learning_rate, fit_until_plateau
from companion.sweep import write_csv
from companion.train import evaluate

# The settings of the chapter (the notebook imports them from here).
LENGTH = (32, 40)  # tokens per review, drawn uniformly; longer than the largest distance
N_TRAIN, N_TEST, BATCH = 1000, 1000, 100
EMBEDDING = 16
# One layer of H units on 16 inputs has H(16 + H) + 2H (RNN), 3(...) (GRU) or 4(...) (LSTM)
# weights and biases: 6,480, 6,384 and 6,400 with these sizes.
HIDDEN = {"RNN": 72, "LSTM": 32, "GRU": 38}
CLIP = 1.0
# Each cell at its best, the same way for all: Adam's learning rate from LR_GRID, chosen per cell,
# initialisation and distance by the validation loss of a run on TUNE_SEED (a seed whose scores
# are never compared); every run trains until its validation loss has not improved for PATIENCE
# epochs (10 steps each), or MAX_EPOCHS, and keeps its best epoch.
LR_GRID = (1e-3, 3e-3, 1e-2)
TUNE_SEED = 100
MAX_EPOCHS, PATIENCE = 30, 5
LR = 1e-2  # the single rate of the first version of this sweep
N_VAL, VAL_SEED = 500, 10_000  # validation reviews: seed VAL_SEED + distance
MEMORY_BIAS = 2.0  # initial b_f of the LSTM and b_z of the GRU (chapters 3 and 5)
CELLS = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
INITS = ("default", "memory")
DISTANCES = (1, 5, 10, 15, 20, 30)
SEEDS = (0, 1, 2, 3, 4)
DATA = Path(__file__).resolve().parents[1] / "data"
OUT = DATA / "08_distance_sweep.csv"
OUT_GRID = DATA / "08_distance_lr_grid.csv"
OUT_HITS = DATA / "08_distance_hits.json"
COLUMNS = [
    "cell",
    "init",
    "distance",
    "seed",
    "lr",
    "hidden",
    "recurrent_params",
    "val_loss",
    "accuracy",
    "epochs",
    "best_epoch",
    "stop",
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
    """b_f (LSTM) or b_z (GRU) = ``value``, all of it in bias_ih: `companion.init.set_gate_bias`.
    Other layers are left as they are."""
    kind = type(model.rnn).__name__
    if kind in ("LSTM", "GRU"):
        set_gate_bias(model.rnn, "f" if kind == "LSTM" else "z", value)
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
        if cell == "RNN":
            identity_init(model.rnn)  # the IRNN, in every direction
        else:
            open_memory_gate(model)
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


def validation_batches(distance, vocab):
    """One batch of N_VAL reviews at ``distance``, the same for every cell and seed: the data the
    learning rate and the stopping epoch are chosen on (never the test reviews)."""
    reviews = synthetic_reviews(N_VAL, length=LENGTH, distance=distance, seed=VAL_SEED + distance)
    return to_batches(reviews, vocab, batch_size=N_VAL)


def train_classifier(
    cell,
    init,
    distance,
    seed,
    vocab,
    device=None,
    bidirectional=False,
    progress=False,
    lr=LR,
    max_epochs=MAX_EPOCHS,
    patience=PATIENCE,
):
    """Train the classifier for ``cell`` and ``init`` at ``distance`` with Adam at ``lr``, until
    its validation loss has not improved for PATIENCE epochs or for ``max_epochs``; it keeps its
    best validation epoch. Returns ``(model, test accuracy, stopped)``, ``stopped`` a
    `companion.selection.Stopped`. ``seed`` fixes the data and the initial weights."""
    train_batches, test_batches = review_data(distance, seed, vocab)
    seed_everything(seed)
    model = make_classifier(cell, init, len(vocab), bidirectional=bidirectional).to(device)
    stopped = fit_until_plateau(
        model,
        train_batches,
        val_data=validation_batches(distance, vocab),
        max_epochs=max_epochs,
        patience=patience,
        loss_fn=nn.BCEWithLogitsLoss(),
        optimizer=torch.optim.Adam(model.parameters(), lr=lr),
        clip_grad_norm=CLIP,
        progress=progress,
    )
    scores = evaluate(
        model, test_batches, loss_fn=nn.BCEWithLogitsLoss(), metrics={"accuracy": accuracy}
    )
    return model, scores["accuracy"], stopped


def test_hits(model, distance, seed, vocab):
    """Which of the N_TEST test reviews the model classifies right: a bool tensor (N_TEST,)."""
    _, test_batches = review_data(distance, seed, vocab)
    padded, lengths, labels = test_batches[0]
    model.eval()
    with torch.no_grad():
        return (model(padded, lengths) > 0).float() == labels


def run_one(cell, init, distance, seed, lr):
    """(the test hits as hex, one row of the table), trained on the CPU with one thread."""
    torch.set_num_threads(1)
    start = time.process_time()
    vocab = make_vocab()
    model, acc, stopped = train_classifier(
        cell, init, distance, seed, vocab, torch.device("cpu"), lr=lr
    )
    hits = test_hits(model, distance, seed, vocab)
    return pack_hits(hits), {
        "cell": cell,
        "init": init,
        "distance": distance,
        "seed": seed,
        "lr": lr,
        "hidden": HIDDEN[cell],
        "recurrent_params": sum(p.numel() for p in model.rnn.parameters()),
        "val_loss": f"{stopped.best_val_loss:.6g}",
        "accuracy": f"{acc:.4f}",
        "epochs": stopped.epochs,
        "best_epoch": stopped.best_epoch,
        "stop": stopped.reason,
        "cpu_seconds": f"{time.process_time() - start:.1f}",
    }


def chosen_rates(grid_rows):
    """{(cell, init, distance): the rate of the lowest validation loss} from the tuning rows."""
    tried = {}  # (cell, init, distance) -> {lr: validation loss}
    for r in grid_rows:
        arm = (r["cell"], r["init"], int(r["distance"]))
        tried.setdefault(arm, {})[float(r["lr"])] = float(r["val_loss"])
    return {arm: choose_learning_rate(list(s), s.__getitem__)[0] for arm, s in tried.items()}


def pack_hits(hits):
    """A bool tensor (N,) as a hex string, 4 reviews a digit (the JSON of every run's hits)."""
    bits = "".join("1" if h else "0" for h in hits.tolist())
    bits += "0" * (-len(bits) % 4)
    return "".join(f"{int(bits[i : i + 4], 2):x}" for i in range(0, len(bits), 4))


def unpack_hits(text, n=N_TEST):
    """The inverse of `pack_hits`: a bool tensor (n,)."""
    bits = "".join(f"{int(c, 16):04b}" for c in text)[:n]
    return torch.tensor([b == "1" for b in bits])


def describe(row):
    """One line per finished run (`companion.sweep.run_all` adds the wall time so far)."""
    return (
        f"d {row['distance']:2d} seed {row['seed']:3d} {row['cell']:4s} {row['init']:7s} "
        f"lr {row['lr']:g}: accuracy {row['accuracy']}, {row['epochs']} epochs ({row['stop']}; "
        f"{row['cpu_seconds']} s CPU)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one thread each")
    args = parser.parse_args()
    arms = [(c, i, d) for d in DISTANCES for c in CELLS for i in INITS]
    tuning, chosen, results = at_best(
        arms,
        run_one,
        grid=LR_GRID,
        tune_seed=TUNE_SEED,
        seeds=SEEDS,
        jobs=args.jobs,
        describe=describe,
    )
    runs = sorted(results, key=lambda k: (k[0][2], k[1], list(CELLS).index(k[0][0]), k[0][1]))
    rows = [results[run][1] for run in runs]
    cpu = sum(float(r["cpu_seconds"]) for r in rows + [v[1] for v in tuning.values()])
    print(f"{len(rows)} runs and {len(tuning)} tuning runs, {cpu:.0f} s of CPU time")
    write_csv(rows, OUT, COLUMNS)
    write_csv([row for _, row in tuning.values()], OUT_GRID, COLUMNS)
    hits = {"/".join(map(str, (*arm, seed))): results[(arm, seed)][0] for arm, seed in runs}
    OUT_HITS.write_text(json.dumps(hits, indent=0) + "\n")
    print(f"wrote the test hits of {len(hits)} runs to {OUT_HITS}")


if __name__ == "__main__":
    main()
