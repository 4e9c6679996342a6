"""The data sets of the book, all available offline.

Four families, one per kind of sequence the book trains on:

- **Synthetic long-range tasks**: :func:`adding_problem` and :func:`multiplication_problem`, the
  tasks Hochreiter and Schmidhuber used to show that an LSTM bridges long time lags.
- **Time series**: :func:`sine_waves` (a clean signal), :func:`load_sunspots` (a small real series
  shipped with the package), cut into supervised pairs by :func:`make_windows` and into train,
  validation and test parts by :func:`split_by_time`.
- **Sentiment**: :func:`synthetic_reviews` (a task whose difficulty is one knob, the distance of
  the deciding word from the end), :class:`Vocab`, :func:`pad_batch` and
  :func:`collate_for_packing` for variable-length batches, and :func:`load_imdb`, a real
  downloader for the IMDB reviews (the only function here that needs the network, once).
- **Characters**: :func:`load_tiny_shakespeare` (the standard small corpus, shipped with the
  package), :func:`char_corpus` (Python's own help texts, kept for older code),
  :class:`CharVocab` and :func:`lm_batches`, which cuts one long stream into batches whose rows
  continue from batch to batch so that a hidden state can be carried across (truncated
  backpropagation through time).

Every random generator here is a local ``torch.Generator`` or ``numpy.random.Generator`` made
from ``seed``: the same seed gives the same data, and calling these functions never disturbs the
global generators that :func:`companion.device.seed_everything` seeded. ``seed=None`` draws fresh
entropy. Tensors are created on the CPU (a training loop moves each batch to its device) and are
``float32`` unless said otherwise.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import importlib.resources
import io
import math
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, Union

import numpy as np
import torch

from companion._checks import check_int, check_real
from companion.download import digests, fetch, file_digest, folder_lock, safe_extract

__all__ = [
    # long-range tasks
    "adding_problem",
    "multiplication_problem",
    # time series
    "sine_waves",
    "make_windows",
    "split_by_time",
    "load_sunspots",
    # sentiment
    "FILLER_WORDS",
    "POSITIVE_WORDS",
    "NEGATIVE_WORDS",
    "synthetic_reviews",
    "tokenize",
    "Vocab",
    "pad_batch",
    "collate_for_packing",
    "IMDB_URL",
    "IMDB_SHA256",
    "IMDB_MD5",
    "IMDB_PART_SIZE",
    "IMDB_TIMEOUT",
    "load_imdb",
    # characters
    "char_corpus",
    "TINY_SHAKESPEARE_SHA256",
    "load_tiny_shakespeare",
    "CharVocab",
    "LMBatches",
    "lm_batches",
]

SeriesLike = Union[np.ndarray, torch.Tensor, Sequence[float]]


# --------------------------------------------------------------------------------------------
# Argument checks and generators
# --------------------------------------------------------------------------------------------


def _torch_generator(seed: int | None, where: str) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()  # fresh entropy; a new Generator would otherwise always start the same
    else:
        generator.manual_seed(check_int(where, "seed", seed, 0))
    return generator


def _numpy_generator(seed: int | None, where: str) -> np.random.Generator:
    if seed is not None:
        seed = check_int(where, "seed", seed, 0)
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------------------------
# Long-range synthetic tasks
# --------------------------------------------------------------------------------------------


def _two_marker_task(
    n: int,
    length: int,
    seed: int | None,
    combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    where: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    n = check_int(where, "n (number of sequences)", n, 1)
    length = check_int(where, "length (one marker in each half)", length, 2)
    generator = _torch_generator(seed, where)

    values = torch.rand(n, length, generator=generator)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=generator)
    second = torch.randint(half, length, (n,), generator=generator)

    markers = torch.zeros(n, length)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0

    x = torch.stack([values, markers], dim=-1)
    y = combine(values[rows, first], values[rows, second]).unsqueeze(1)
    return x, y


def adding_problem(
    n: int, length: int = 100, *, seed: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The adding problem: remember two marked numbers across ``length`` steps and add them.

    Each sequence has two input channels. Channel 0 holds values drawn from U[0, 1); channel 1 is
    a marker that is 1 at exactly two steps and 0 elsewhere: one step in the first half
    ``[0, length // 2)``, one in the second half ``[length // 2, length)``. The target is the sum
    of the two marked values, so a model must carry the first one across on average
    ``length / 2`` steps of distraction. Predicting the mean, 1.0, gives a mean squared error of
    1/6 ≈ 0.167: the baseline a model has to beat.

    This is the popular form of experiment 4 of Hochreiter & Schmidhuber (1997), "Long Short-Term
    Memory", as used by Le, Jaitly & Hinton (2015) and later papers; the 1997 original drew values
    from [-1, 1], put the first marker among the first ten steps and scaled the target.

    Args:
        n: number of sequences (N).
        length: steps per sequence (L), at least 2.
        seed: the same seed gives the same data; ``None`` gives fresh data each call.

    Returns:
        ``(x, y)``: ``x`` of shape ``(N, T, 2)`` (batch first: values, marker), ``y`` of shape
        ``(N, 1)``, both float32 on the CPU.

    Raises:
        TypeError: if ``n``, ``length`` or ``seed`` is not an int.
        ValueError: if ``n < 1``, ``length < 2`` or ``seed < 0``.
    """
    return _two_marker_task(n, length, seed, torch.add, "adding_problem")


def multiplication_problem(
    n: int, length: int = 100, *, seed: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The multiplication problem: like :func:`adding_problem`, but the target is the product.

    Same inputs as :func:`adding_problem` (values U[0, 1) in channel 0, exactly two markers in
    channel 1, one in each half); the target is the product of the two marked values. Predicting
    the mean, 0.25, gives a mean squared error of 7/144 ≈ 0.049. Hochreiter & Schmidhuber (1997)
    use it (experiment 5) to show that the LSTM also learns a non-additive combination.

    Returns:
        ``(x, y)``: ``x`` of shape ``(N, T, 2)``, ``y`` of shape ``(N, 1)``, float32.
    """
    return _two_marker_task(n, length, seed, torch.mul, "multiplication_problem")


# --------------------------------------------------------------------------------------------
# Time series
# --------------------------------------------------------------------------------------------


def sine_waves(
    n: int = 100, length: int = 1000, period: float = 20, *, seed: int | None = None
) -> torch.Tensor:
    """Phase-shifted sine waves, as in PyTorch's ``time_sequence_prediction`` example.

    Wave ``k`` is ``sin(2π (t + s_k) / period)`` for ``t = 0, ..., length - 1`` with an integer
    shift ``s_k`` drawn uniformly from ``[-4 period, 4 period)``, like the example's
    ``randint(-4T, 4T)``. Unlike the example, which computes ``sin(x / T)`` and so repeats every
    ``2π T`` ≈ 126 steps for ``T = 20``, the waves here repeat every ``period`` steps.

    Args:
        n: number of waves (N).
        length: steps per wave (L).
        period: steps per cycle, a positive number (need not be an integer).
        seed: the same seed gives the same waves.

    Returns:
        Tensor of shape ``(N, T)``, float32, values in [-1, 1].
    """
    where = "sine_waves"
    n = check_int(where, "n (number of waves)", n, 1)
    length = check_int(where, "length", length, 1)
    # Checked, not converted: the waves are computed from the period as given.
    check_real(where, "period", period, low=0, low_open=True, rule="a positive period (steps)")
    generator = _torch_generator(seed, where)
    reach = max(1, int(round(4 * period)))
    shifts = torch.randint(-reach, reach, (n, 1), generator=generator, dtype=torch.float64)
    # float64 for the phase: in float32, t + s loses digits for long series.
    t = torch.arange(length, dtype=torch.float64) + shifts
    return torch.sin(2 * math.pi * t / float(period)).to(torch.float32)


def _as_1d_tensor(series: SeriesLike, where: str) -> torch.Tensor:
    if isinstance(series, torch.Tensor):
        tensor = series.detach()
    else:
        try:
            tensor = torch.as_tensor(np.asarray(series, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{where}: expected a 1-D numpy array, tensor or sequence of numbers, "
                f"got {type(series).__name__}"
            ) from err
    if tensor.dim() != 1:
        raise ValueError(
            f"{where}: expected a 1-D series of shape (T,), got shape {tuple(tensor.shape)}"
        )
    return tensor.to(torch.float32)


def make_windows(
    series: SeriesLike, input_length: int, horizon: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a series into (input window, next values) pairs for supervised forecasting.

    With stride 1, pair ``m`` is ``X[m] = series[m : m + input_length]`` and
    ``Y[m] = series[m + input_length : m + input_length + horizon]``. Windows keep their time
    order (shuffle the pairs of the *training* part only, after :func:`split_by_time`, never
    before: neighbouring windows overlap, so a shuffle before the split leaks the test set).

    Args:
        series: 1-D numpy array, tensor or sequence of numbers, shape ``(T,)``.
        input_length: steps the model sees (L_in), at least 1.
        horizon: steps to predict (H), at least 1.

    Returns:
        ``(X, Y)``: ``X`` of shape ``(M, input_length, 1)`` (batch first, one feature) and ``Y``
        of shape ``(M, horizon)``, float32, with ``M = T - input_length - horizon + 1``. Both
        live on the device of ``series`` when it is a tensor, on the CPU otherwise.

    Raises:
        ValueError: if the series is not 1-D or is shorter than ``input_length + horizon``.
    """
    where = "make_windows"
    input_length = check_int(where, "input_length", input_length, 1)
    horizon = check_int(where, "horizon", horizon, 1)
    tensor = _as_1d_tensor(series, where)
    width = input_length + horizon
    if tensor.numel() < width:
        raise ValueError(
            f"{where}: a window needs input_length + horizon = {input_length} + {horizon} = "
            f"{width} values, but the series has only {tensor.numel()}"
        )
    windows = tensor.unfold(0, width, 1)  # (M, width), a view with overlapping rows
    x = windows[:, :input_length].unsqueeze(-1).contiguous()
    y = windows[:, input_length:].contiguous()
    return x, y


def split_by_time(series, train: float = 0.7, val: float = 0.15):
    """Split a series into contiguous train, validation and test parts, in time order.

    The first ``round(train * T)`` steps train, the next ``round(val * T)`` validate, the rest
    test; nothing is shuffled, so the model is always evaluated on the future of what it was
    trained on. Normalise with statistics of the training part only.

    Args:
        series: numpy array or tensor; split along its first axis (time), so ``(T,)`` and
            ``(T, features)`` both work.
        train: fraction for training, in (0, 1).
        val: fraction for validation, in [0, 1); ``train + val`` must stay below 1.

    Returns:
        ``(train_part, val_part, test_part)``: views of ``series`` (same type) of shapes
        ``(T_train, ...)``, ``(T_val, ...)``, ``(T_test, ...)``. ``T_val`` is 0 when ``val=0``.

    Raises:
        ValueError: if a fraction is out of range or a requested part would be empty.
    """
    where = "split_by_time"
    if isinstance(series, (list, tuple)):
        series = np.asarray(series)
    if not isinstance(series, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{where}: expected a numpy array or tensor, got {type(series).__name__}")
    if series.ndim < 1:
        raise ValueError(f"{where}: expected at least 1 dimension (T, ...), got a scalar")
    if not (0 < train < 1):
        raise ValueError(f"{where}: expected 0 < train < 1, got train={train}")
    if not (0 <= val < 1) or train + val >= 1:
        raise ValueError(
            f"{where}: expected 0 <= val and train + val < 1 (leaving a test part), "
            f"got train={train}, val={val}"
        )
    total = len(series)
    n_train = int(round(train * total))
    n_val = int(round(val * total))
    n_test = total - n_train - n_val
    if n_train < 1 or n_test < 1 or (val > 0 and n_val < 1):
        raise ValueError(
            f"{where}: a series of {total} steps split {train}/{val}/{1 - train - val:.3g} gives "
            f"parts of {n_train}/{n_val}/{n_test} steps; every requested part needs at least 1"
        )
    return series[:n_train], series[n_train : n_train + n_val], series[n_train + n_val :]


def load_sunspots() -> tuple[np.ndarray, np.ndarray]:
    """Yearly mean sunspot numbers, 1700 to 2008 (309 values), shipped with the package.

    The file ``companion/datasets/sunspots_yearly.csv`` is the public-domain copy distributed
    with ``statsmodels`` (originally from NOAA's National Geophysical Data Center); see
    ``companion/datasets/README.md`` for the source, licence and provenance. The numbers are the
    original (version 1) international sunspot number, before the 2015 recalibration. The series
    has a cycle of about 11 years with irregular amplitude, which makes it a classic small
    forecasting benchmark.

    Returns:
        ``(years, counts)``: ``years`` int64 of shape ``(309,)`` (1700, ..., 2008) and ``counts``
        float64 of shape ``(309,)``.
    """
    resource = importlib.resources.files("companion").joinpath("datasets/sunspots_yearly.csv")
    text = resource.read_text(encoding="utf-8")
    table = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, dtype=np.float64)
    years = table[:, 0].astype(np.int64)
    counts = table[:, 1].copy()
    return years, counts


# --------------------------------------------------------------------------------------------
# Sentiment
# --------------------------------------------------------------------------------------------

#: Neutral words the synthetic reviews are made of; none carries sentiment.
FILLER_WORDS: tuple[str, ...] = tuple(
    """the a an this that movie film plot story scene actor actress director camera music ending
    character cast script screen was is it and of in on with about then after before some many
    one two night city house car friend family time year we they he she saw watched""".split()
)

#: Words that make a synthetic review positive (label 1).
POSITIVE_WORDS: tuple[str, ...] = tuple(
    "good great excellent wonderful superb brilliant delightful enjoyable".split()
)

#: Words that make a synthetic review negative (label 0).
NEGATIVE_WORDS: tuple[str, ...] = tuple(
    "bad awful terrible boring dull poor dreadful tedious".split()
)


def synthetic_reviews(
    n: int,
    *,
    length: int | tuple[int, int] = 20,
    distance: int = 0,
    seed: int | None = None,
) -> list[tuple[list[str], int]]:
    """Toy reviews whose label is decided by one word placed ``distance`` tokens before the end.

    Every review is neutral filler (:data:`FILLER_WORDS`, drawn uniformly and independently of
    the label) except one sentiment word at position ``len(review) - 1 - distance``: a word from
    :data:`POSITIVE_WORDS` for label 1, from :data:`NEGATIVE_WORDS` for label 0. Nothing but that
    word tells the labels apart, so a classifier reading the last hidden state must carry the
    word across ``distance`` filler steps: the knob the sentiment chapter turns. Exactly
    ``n // 2`` reviews are negative and the rest positive, in shuffled order.

    Args:
        n: number of reviews, at least 2.
        length: tokens per review, an int, or ``(low, high)`` for lengths drawn uniformly from
            ``low`` to ``high`` inclusive (variable lengths, for padding and packing).
        distance: filler tokens after the sentiment word, ``0 <= distance < length`` (the
            smallest length when a range is given). ``0`` puts the word last.
        seed: the same seed gives the same reviews.

    Returns:
        A list of ``n`` pairs ``(tokens, label)``: ``tokens`` a list of str, ``label`` 0 or 1.
    """
    where = "synthetic_reviews"
    n = check_int(where, "n (number of reviews)", n, 2)
    if isinstance(length, tuple):
        if len(length) != 2:
            raise ValueError(f"{where}: expected length as an int or (low, high), got {length!r}")
        low = check_int(where, "length low", length[0], 1)
        high = check_int(where, "length high", length[1], low)
    else:
        low = high = check_int(where, "length", length, 1)
    distance = check_int(where, "distance", distance, 0)
    if distance >= low:
        raise ValueError(
            f"{where}: expected distance < length (the word must fit inside the review), "
            f"got distance={distance} with length={length}"
        )
    rng = _numpy_generator(seed, where)

    labels = np.array([0] * (n // 2) + [1] * (n - n // 2))
    rng.shuffle(labels)
    lengths = rng.integers(low, high + 1, size=n)
    reviews: list[tuple[list[str], int]] = []
    for label, size in zip(labels.tolist(), lengths.tolist()):
        fillers = rng.integers(0, len(FILLER_WORDS), size=size)
        tokens = [FILLER_WORDS[i] for i in fillers]
        words = POSITIVE_WORDS if label == 1 else NEGATIVE_WORDS
        tokens[size - 1 - distance] = words[int(rng.integers(0, len(words)))]
        reviews.append((tokens, label))
    return reviews


_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens of a review: words (with ``'s``, ``n't``-style endings), numbers and
    single punctuation marks. IMDB's HTML line breaks ``<br />`` count as spaces.

    >>> tokenize("Not bad.<br /><br />It's GREAT!")
    ['not', 'bad', '.', "it's", 'great', '!']
    """
    text = text.lower().replace("<br />", " ").replace("<br/>", " ")
    return _TOKEN_RE.findall(text)


class Vocab:
    """A word vocabulary: token <-> integer id, with ``<pad>`` = 0 and ``<unk>`` = 1.

    Padding is id 0 so that ``nn.Embedding(len(vocab), d, padding_idx=Vocab.PAD)`` and
    :func:`pad_batch` agree. Tokens not in the vocabulary encode to ``<unk>``.

    >>> vocab = Vocab.build([["a", "b", "a"]])
    >>> vocab.encode(["a", "c"]).tolist()
    [2, 1]
    """

    PAD_TOKEN = "<pad>"
    UNK_TOKEN = "<unk>"
    PAD = 0
    UNK = 1

    def __init__(self, tokens: Iterable[str] = ()):
        """Make a vocabulary of the specials followed by ``tokens`` in the given order."""
        self.itos: list[str] = [self.PAD_TOKEN, self.UNK_TOKEN]
        for token in tokens:
            if token not in (self.PAD_TOKEN, self.UNK_TOKEN):
                self.itos.append(token)
        self.stoi: dict[str, int] = {token: i for i, token in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            duplicates = [t for t, c in collections.Counter(self.itos).items() if c > 1]
            raise ValueError(f"Vocab: expected distinct tokens, got duplicates {duplicates[:5]}")

    @classmethod
    def build(
        cls,
        texts: Iterable[Sequence[str] | str],
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> "Vocab":
        """Build a vocabulary from a corpus.

        Args:
            texts: an iterable of token lists; a plain string is tokenized with :func:`tokenize`.
            min_freq: keep tokens seen at least this often.
            max_size: keep at most this many tokens besides the two specials (the most frequent).

        Tokens are ordered by decreasing frequency, ties alphabetically, so the same corpus
        always gives the same ids.
        """
        min_freq = check_int("Vocab.build", "min_freq", min_freq, 1)
        if max_size is not None:
            max_size = check_int("Vocab.build", "max_size", max_size, 0)
        counts: collections.Counter[str] = collections.Counter()
        for text in texts:
            counts.update(tokenize(text) if isinstance(text, str) else text)
        kept = [t for t, c in counts.items() if c >= min_freq]
        kept.sort(key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[:max_size]
        return cls(kept)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __getitem__(self, token: str) -> int:
        return self.stoi.get(token, self.UNK)

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    def encode(self, tokens: Sequence[str] | str) -> torch.Tensor:
        """Ids of ``tokens`` (a token list, or a string tokenized with :func:`tokenize`):
        LongTensor of shape ``(len(tokens),)``."""
        if isinstance(tokens, str):
            tokens = tokenize(tokens)
        return torch.tensor([self.stoi.get(t, self.UNK) for t in tokens], dtype=torch.long)

    def decode(self, ids: Iterable[int] | torch.Tensor, *, skip_pad: bool = True) -> list[str]:
        """Tokens of ``ids`` (shape ``(T,)``); padding is dropped unless ``skip_pad=False``."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        tokens = []
        for i in ids:
            if not 0 <= i < len(self.itos):
                raise IndexError(f"Vocab.decode: expected ids in [0, {len(self.itos)}), got {i}")
            if not (skip_pad and i == self.PAD):
                tokens.append(self.itos[i])
        return tokens


def pad_batch(
    seqs: Sequence[Sequence[int] | torch.Tensor], pad_value: int = Vocab.PAD
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad sequences of ids into one batch.

    Args:
        seqs: N sequences of ids (lists or 1-D LongTensors), each at least 1 long.
        pad_value: the id written after the end of each sequence.

    Returns:
        ``(padded, lengths)``: ``padded`` LongTensor ``(N, L_max)`` (batch first) and ``lengths``
        LongTensor ``(N,)`` on the CPU, where ``pack_padded_sequence`` requires it.

    Raises:
        ValueError: for an empty batch or an empty sequence (packing rejects length 0).
    """
    if len(seqs) == 0:
        raise ValueError("pad_batch: expected at least one sequence, got an empty batch")
    tensors = []
    for k, seq in enumerate(seqs):
        tensor = torch.as_tensor(seq, dtype=torch.long).cpu()
        if tensor.dim() != 1:
            raise ValueError(
                f"pad_batch: expected 1-D sequences of ids, got shape {tuple(tensor.shape)} "
                f"for sequence {k}"
            )
        if tensor.numel() == 0:
            raise ValueError(
                f"pad_batch: sequence {k} is empty; expected lengths >= 1 "
                "(pack_padded_sequence rejects length 0)"
            )
        tensors.append(tensor)
    lengths = torch.tensor([t.numel() for t in tensors], dtype=torch.long)
    padded = torch.full((len(tensors), int(lengths.max())), pad_value, dtype=torch.long)
    for row, tensor in enumerate(tensors):
        padded[row, : tensor.numel()] = tensor
    return padded, lengths


def collate_for_packing(
    batch: Sequence[tuple[Sequence[int] | torch.Tensor, int]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``collate_fn`` for a ``DataLoader`` over ``(ids, label)`` pairs of varying length.

    The batch keeps the loader's order (it is *not* sorted by length), so pack it with
    ``pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)``, which sorts
    internally and restores the order of the outputs.

    Returns:
        ``(padded, lengths, labels)``: ``padded`` LongTensor ``(N, L_max)`` padded with
        :attr:`Vocab.PAD`, ``lengths`` LongTensor ``(N,)`` on the CPU, ``labels`` LongTensor
        ``(N,)`` (use ``labels.float()`` for ``BCEWithLogitsLoss``).
    """
    if len(batch) == 0:
        raise ValueError("collate_for_packing: expected at least one (ids, label) pair, got none")
    try:
        seqs, labels = zip(*batch)
    except (TypeError, ValueError) as err:
        raise ValueError(
            "collate_for_packing: expected a batch of (ids, label) pairs, "
            f"got elements like {batch[0]!r:.80}"
        ) from err
    padded, lengths = pad_batch(seqs)
    return padded, lengths, torch.as_tensor(labels, dtype=torch.long)


#: Where the Large Movie Review Dataset (Maas et al., 2011) is published.
IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
#: SHA-256 of ``aclImdb_v1.tar.gz`` (the digest TensorFlow Datasets and others record).
IMDB_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
#: MD5 of the same archive, as torchtext records it (for reference and for ``md5=``).
IMDB_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"

#: Reviews in each of the four parts train/neg, train/pos, test/neg and test/pos.
IMDB_PART_SIZE = 12_500
#: Seconds :func:`load_imdb` waits for the server to connect, and for every read after that.
IMDB_TIMEOUT = 60.0

_IMDB_DIR = "aclImdb"
_IMDB_PARTS = [(split, name) for split in ("train", "test") for name in ("neg", "pos")]
_IMDB_MARKER = ".complete"  # written into aclImdb/ after a whole archive was extracted
_IMDB_STAGING = ".aclImdb-extract-"


def _imdb_counts(folder: Path) -> list[int]:
    return [len(list((folder / s / n).glob("*.txt"))) for s, n in _IMDB_PARTS]


def _imdb_complete(folder: Path) -> bool:
    """Extracted by load_imdb to the end (the marker), or placed by hand with every review."""
    if (folder / _IMDB_MARKER).is_file():
        return True
    return folder.is_dir() and _imdb_counts(folder) == [IMDB_PART_SIZE] * len(_IMDB_PARTS)


def _remove_leftovers(root: Path, archive_name: str) -> None:
    """Partial downloads and half-extracted folders of an earlier run that was killed."""
    for part in root.glob(f".{archive_name}.*.part"):
        part.unlink(missing_ok=True)
    for staging in root.glob(f"{_IMDB_STAGING}*"):
        shutil.rmtree(staging, ignore_errors=True)


def _read_imdb(folder: Path) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for split, name in _IMDB_PARTS:
        label = 1 if name == "pos" else 0
        for path in sorted((folder / split / name).glob("*.txt")):
            splits[split].append((path.read_text(encoding="utf-8"), label))
    return splits["train"], splits["test"]


def load_imdb(
    root: str | os.PathLike,
    download: bool = True,
    *,
    url: str = IMDB_URL,
    sha256: str | None = IMDB_SHA256,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = IMDB_TIMEOUT,
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The IMDB Large Movie Review Dataset (Maas et al., 2011): 25,000 train, 25,000 test reviews.

    The first call downloads ``aclImdb_v1.tar.gz`` (about 80 MiB) into ``root`` with a progress
    bar, checks its checksum, extracts it into a temporary folder and renames that to
    ``root/aclImdb`` in one step, with a marker file written last, so an interrupted run never
    leaves a half-extracted data set that later calls would trust; the archive is then deleted.
    Partial downloads and extraction folders of a killed earlier run are removed. Later calls find
    ``root/aclImdb`` and read it without touching the network; a folder extracted by hand counts
    only if it holds all 4 x 12,500 reviews. An archive already placed at
    ``root/aclImdb_v1.tar.gz`` (downloaded by hand) is checked and used as well.

    Args:
        root: folder for the data, created if missing.
        download: fetch the archive if the data is not in ``root``; with ``False`` a missing data
            set raises instead.
        url: where to fetch the archive (a mirror, or a ``file://`` URL).
        sha256: expected SHA-256 of the archive; ``None`` to skip this check.
        md5: expected MD5, used only when ``sha256`` is ``None`` (some mirrors publish only MD5).
        progress: show a ``tqdm`` progress bar while downloading.
        timeout: seconds to wait for the connection and for every read; a server that stops
            answering raises instead of hanging.

    Returns:
        ``(train, test)``: lists of ``(text, label)`` with label 1 for a positive review (rating
        >= 7), 0 for a negative one (rating <= 4). Within each list the negative reviews come
        first, then the positive ones, each sorted by file name: shuffle before batching.
        Texts are raw, including the ``<br />`` line breaks; see :func:`tokenize`.

    Raises:
        FileNotFoundError: if the data is missing and ``download=False``.
        FileExistsError: if ``root/aclImdb`` exists but is incomplete.
        ConnectionError: if the download fails (offline, refused, no answer within ``timeout``);
            the message names the URL and where to place the file by hand.
        ValueError: if the downloaded or found archive fails the checksum (the file is deleted).
    """
    root = Path(root).expanduser()
    folder = root / _IMDB_DIR
    if _imdb_complete(folder):
        return _read_imdb(folder)
    if folder.exists():
        counts = _imdb_counts(folder)
        raise FileExistsError(
            f"load_imdb: {folder} is incomplete: it holds {sum(counts):,} of "
            f"{IMDB_PART_SIZE * len(_IMDB_PARTS):,} reviews (train/neg, train/pos, test/neg, "
            f"test/pos: {counts}) and no completion marker; delete it and call load_imdb again"
        )

    name = Path(urllib.parse.urlparse(url).path).name or "aclImdb_v1.tar.gz"
    wanted = digests(sha256, md5)
    if not download and not (root / name).is_file():
        raise FileNotFoundError(
            f"load_imdb: no IMDB data in {root} (expected the folder {folder} or the archive "
            f"{root / name}); call load_imdb({str(root)!r}, download=True) with internet "
            f"access, or download {url} by hand into {root}"
        )
    # One process at a time: a second one would delete the first one's partial download as a
    # leftover. It waits, and then finds the data set there.
    with folder_lock(root, _IMDB_DIR, "load_imdb"):
        if _imdb_complete(folder):
            return _read_imdb(folder)
        _remove_leftovers(root, name)
        _fetch_and_extract(root / name, folder, url, wanted, download, progress, timeout)
    return _read_imdb(folder)


def _fetch_and_extract(
    archive: Path,
    folder: Path,
    url: str,
    wanted: dict[str, str],
    download: bool,
    progress: bool,
    timeout: float,
) -> None:
    """Check (or download) ``archive`` and extract it to ``folder`` in one rename."""
    root = archive.parent
    if archive.is_file():
        for algorithm, expected in wanted.items():
            got = file_digest(archive, algorithm)
            if got != expected:
                archive.unlink()  # a stale or truncated archive must not be tried again
                if not download:
                    raise ValueError(
                        f"load_imdb: {algorithm} checksum mismatch for {archive}: expected "
                        f"{expected}, got {got}; the file was deleted"
                    )
    if not archive.is_file():  # (with download=False, load_imdb has refused already)
        hint = (
            f"Without a network, download it on another machine and place it at {archive} "
            f"(load_imdb checks and extracts it), or extract it to {folder}"
        )
        fetch(url, archive, where="load_imdb", digests=wanted, timeout=timeout,
              progress=progress, hint=hint)  # fmt: skip

    staging = Path(tempfile.mkdtemp(dir=root, prefix=_IMDB_STAGING))
    try:
        safe_extract(archive, staging, where="load_imdb")
        parts = [staging / _IMDB_DIR / split / part for split, part in _IMDB_PARTS]
        if not all(p.is_dir() for p in parts):
            raise ValueError(
                f"load_imdb: expected {archive.name} to contain {_IMDB_DIR}/{{train,test}}/"
                f"{{pos,neg}}/, got top-level entries {sorted(p.name for p in staging.iterdir())}"
            )
        (staging / _IMDB_DIR / _IMDB_MARKER).touch()  # last: the extraction is whole
        try:
            os.replace(staging / _IMDB_DIR, folder)
        except OSError:
            if not _imdb_complete(folder):  # else another process just finished the same work
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    archive.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Characters
# --------------------------------------------------------------------------------------------

# Typographic characters in Python's help texts, spelled in ASCII so the vocabulary stays small.
_ASCII_SPELLING = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2013": "-",
    "\u2014": "--",
    "\u2026": "...",
    "\t": "    ",
}


def char_corpus(max_chars: int | None = None) -> str:
    """English text that ships with every Python: the help topics of ``pydoc_data.topics``.

    The topics (the language reference sections that ``help("if")`` prints, about half a
    million characters) are joined in sorted key order, separated by blank lines. Curly quotes,
    dashes and ellipses are spelled in ASCII and any other character outside printable ASCII
    and newline is dropped, so the alphabet has fewer than 100 symbols. The text is the same on
    every call but depends on the Python version (each release updates its documentation).

    Args:
        max_chars: keep only the first ``max_chars`` characters (``None``: all of it).

    Returns:
        The corpus as one ``str``.
    """
    from pydoc_data.topics import topics  # imported here: it is a large module

    text = "\n\n".join(topics[key].strip("\n") for key in sorted(topics))
    text = "".join(_ASCII_SPELLING.get(ch, ch) for ch in text)
    text = "".join(ch for ch in text if ch == "\n" or " " <= ch <= "~")
    if max_chars is not None:
        max_chars = check_int("char_corpus", "max_chars", max_chars, 1)
        text = text[:max_chars]
    return text


#: SHA-256 of the decompressed tiny Shakespeare text (karpathy/char-rnn's ``input.txt``).
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

_TINY_SHAKESPEARE_SPLITS = (None, "train", "val")


def load_tiny_shakespeare(split: str | None = None) -> str:
    """Tiny Shakespeare: 1,115,394 characters (65 distinct) of the plays, shipped with the package.

    The corpus of Karpathy's char-rnn, stored gzipped as
    ``companion/datasets/tinyshakespeare.txt.gz`` (source, licence and checksum in
    ``companion/datasets/README.md``). It needs no network and is identical on every Python.
    The split is nanoGPT's ``shakespeare_char`` split: contiguous, the first 90% for training
    and the last 10% for validation (``n = len(text)``; train is ``text[:int(n * 0.9)]``).

    Args:
        split: ``None`` for the whole text, ``"train"`` for the first 90%, ``"val"`` for the
            last 10%.

    Returns:
        The requested part as one ``str`` (1,115,394, 1,003,854 or 111,540 characters).

    Raises:
        ValueError: ``split`` is not one of ``None``, ``"train"``, ``"val"``.
        RuntimeError: the decompressed text does not have the expected SHA-256 (a damaged file).
    """
    if split not in _TINY_SHAKESPEARE_SPLITS:
        raise ValueError(
            f"load_tiny_shakespeare: split must be None, 'train' or 'val', got {split!r}"
        )
    package = importlib.resources.files("companion")
    raw = gzip.decompress(package.joinpath("datasets/tinyshakespeare.txt.gz").read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != TINY_SHAKESPEARE_SHA256:
        raise RuntimeError(
            f"load_tiny_shakespeare: the shipped text has SHA-256 {digest}, expected "
            f"{TINY_SHAKESPEARE_SHA256}; the package data is damaged, reinstall companion"
        )
    text = raw.decode("utf-8")
    if split is None:
        return text
    n_train = int(len(text) * 0.9)
    return text[:n_train] if split == "train" else text[n_train:]


class CharVocab:
    """The characters of a text, each mapped to an integer id (sorted by code point).

    >>> vocab = CharVocab("hello")
    >>> vocab.encode("hell").tolist(), vocab.decode([3, 1])
    ([1, 0, 2, 2], 'oh')
    """

    def __init__(self, text: str):
        if not isinstance(text, str) or not text:
            raise ValueError("CharVocab: expected a non-empty str to collect characters from")
        self.chars: list[str] = sorted(set(text))
        self.stoi: dict[str, int] = {ch: i for i, ch in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, ch: str) -> bool:
        return ch in self.stoi

    def __repr__(self) -> str:
        return f"CharVocab(size={len(self)})"

    def encode(self, text: str) -> torch.Tensor:
        """Ids of the characters of ``text``: LongTensor of shape ``(len(text),)``.

        Raises:
            ValueError: for a character the vocabulary has not seen, naming it.
        """
        try:
            return torch.tensor([self.stoi[ch] for ch in text], dtype=torch.long)
        except KeyError as err:
            # ValueError, not KeyError: KeyError would print the message as an escaped repr.
            raise ValueError(
                f"CharVocab.encode: character {err.args[0]!r} is not in the vocabulary "
                f"of {len(self)} characters"
            ) from None

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """The text of ``ids`` (any shape is flattened in row-major order).

        Raises:
            IndexError: for an id outside [0, len(self)), negative ones included (Python's
                ``chars[-1]`` would quietly give the last character).
        """
        if isinstance(ids, torch.Tensor):
            ids = ids.flatten().tolist()
        ids = list(ids)
        bad = [i for i in ids if not 0 <= i < len(self.chars)]
        if bad:
            raise IndexError(
                f"CharVocab.decode: expected ids in [0, {len(self)}), got {len(bad)} outside "
                f"it: {bad[:10]}"
            )
        return "".join(self.chars[i] for i in ids)


class LMBatches:
    """Language-model batches over one long stream of ids; see :func:`lm_batches`.

    A re-iterable sequence (iterate it once per epoch, index it, ``len()`` it).

    Attributes:
        data: the stream laid out as ``(batch_size, row_length)``; row r is a contiguous stretch
            of the stream that follows row r - 1.
    """

    def __init__(self, ids: torch.Tensor, batch_size: int, bptt: int):
        where = "lm_batches"
        if not isinstance(ids, torch.Tensor):
            raise TypeError(f"{where}: expected ids as a LongTensor (T,), got {type(ids).__name__}")
        if ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype.is_complex:
            raise ValueError(
                f"{where}: expected a 1-D integer tensor of ids (T,), got shape "
                f"{tuple(ids.shape)} and dtype {ids.dtype}"
            )
        self.batch_size = check_int(where, "batch_size", batch_size, 1)
        self.bptt = check_int(where, "bptt", bptt, 1)
        row_length = ids.numel() // self.batch_size
        if row_length < self.bptt + 1:
            raise ValueError(
                f"{where}: {ids.numel()} ids split into {self.batch_size} rows give "
                f"{row_length} ids per row, but one batch needs bptt + 1 = {self.bptt + 1} "
                "(inputs plus the next-character target); use fewer rows or a shorter bptt"
            )
        # Drop the tail that does not fill every row, then lay rows out one after the other.
        self.data = ids[: row_length * self.batch_size].long().view(self.batch_size, row_length)
        # The last step of a row has no target, hence row_length - 1 usable inputs.
        self._count = (row_length - 1) // self.bptt

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -self._count <= k < self._count:
            raise IndexError(f"LMBatches: index {k} out of range for {self._count} batches")
        k %= self._count
        start = k * self.bptt
        x = self.data[:, start : start + self.bptt].contiguous()
        y = self.data[:, start + 1 : start + 1 + self.bptt].contiguous()
        return x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for k in range(self._count):
            yield self[k]

    def __repr__(self) -> str:
        return f"LMBatches({self._count} batches of ({self.batch_size}, {self.bptt}))"


def lm_batches(ids: torch.Tensor, batch_size: int, bptt: int) -> LMBatches:
    """Cut a stream of ids into next-token batches whose rows continue across batches.

    The stream ``ids`` of length T is cut into ``batch_size`` (N) contiguous rows of
    ``R = T // N`` ids (the last ``T mod N`` ids are dropped). Batch ``k`` holds columns
    ``[k bptt, (k + 1) bptt)`` of every row as input and the same columns shifted by one as
    target, so ``y[:, t] == x[:, t + 1]`` within a batch, and row r of batch k + 1 starts where row
    r of batch k stopped: the hidden state left by row r is the right starting state for row r
    of the next batch (truncated BPTT: carry it, detached). Only full batches are produced, so
    every batch has the same shape; ``(R - 1) // bptt`` of them.

    Args:
        ids: LongTensor of shape ``(T,)``, e.g. ``CharVocab(text).encode(text)``.
        batch_size: rows per batch (N).
        bptt: steps per batch (the truncation length of backpropagation through time).

    Returns:
        A re-iterable :class:`LMBatches` yielding ``(x, y)``, both LongTensor of shape
        ``(N, bptt)`` (batch first) on the device of ``ids``.

    Raises:
        ValueError: if ``ids`` is not 1-D integer or is too short for one batch.
    """
    return LMBatches(ids, batch_size, bptt)
