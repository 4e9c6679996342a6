"""Training on several processes with ``torch.distributed``: data parallelism for :func:`fit`.

Each process (a *rank*) holds a replica of the model and trains on its own share of every batch;
``DistributedDataParallel`` (DDP) averages the gradients across ranks in ``backward``, so every
replica takes the same step. With the global batch split evenly, that step is the step one
process would take on the whole batch: a run on W ranks ends with the weights of a run on one
process, up to the order of floating-point sums. A script launched by ``torchrun`` reads::

    import torch.distributed as dist
    from companion.distributed import shard_batches
    from companion.train import fit

    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    seed_everything(0)  # the same seed on every rank: the same starting weights and shuffles
    history = fit(model, shard_batches(train_batches), ..., ddp=True)
    companion.distributed.save_checkpoint("run.pt", model, optimizer, history)  # rank 0 writes

What :func:`fit` does when its model is a ``DistributedDataParallel`` (or ``ddp=True`` wraps it):

- the progress bar and its messages appear on rank 0 only;
- a non-finite training loss on any rank stops every rank before ``backward``, with the weights
  untouched (:meth:`Replicas.first_nonfinite`); gradients are averaged by DDP, so a non-finite
  gradient is non-finite on every rank and all of them refuse the step together;
- the losses and metrics of the history are sums over all ranks divided by the number of samples
  of all ranks, so every rank records the same history (and a ``ReduceLROnPlateau`` scheduler
  steps alike everywhere);
- a ``DistributedSampler`` behind the training data is told the epoch, so it shuffles anew.

Data: :func:`shard_batches` gives each rank its rows of every batch, which keeps the global batch
(and so the optimisation) independent of the number of ranks. For the stateful batches of
:func:`companion.data.lm_batches` it keeps the same rows on a rank from batch to batch, so each
rank carries the hidden states of its own slice of the text streams (truncated BPTT).

Random numbers: every rank must build the same global batches, so a shuffling ``DataLoader``
must draw the same order everywhere: seed every rank alike, or give it its own
``generator=torch.Generator().manual_seed(seed)``. With the global generator seeded alike, dropout
draws the same masks on every rank's rows; reseed each rank after building the model
(``torch.manual_seed(seed + rank)``) and give the ``DataLoader`` its own generator.

Checkpoints: :func:`save_checkpoint` and :func:`load_checkpoint` are called on every rank; rank 0
writes, every rank reads. The file holds the unwrapped model, so it loads into a plain model on
one process, and records the global batch, so a resumed run on any number of ranks that divides
it continues the same optimisation; a world size that cannot keep the global batch is refused
with a message that says which would.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from companion import checkpoints
from companion._checks import check_int
from companion.device import unwrap

__all__ = [
    "Replicas",
    "ShardedBatches",
    "replicas",
    "shard_batches",
    "wrap",
    "unwrap",
    "save_checkpoint",
    "load_checkpoint",
]

PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------------------------------
# The ranks that train one model
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replicas:
    """The processes that train one model together: its rank among them and how many there are.

    A model that is not a ``DistributedDataParallel`` is trained by one process: ``Replicas()``,
    whose methods need no communication.
    """

    rank: int = 0
    world_size: int = 1
    group: Any = None
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on rank 0, the one that shows progress and writes files."""
        return self.rank == 0

    def sum_over_ranks(self, sums: Mapping[str, float], count: int) -> tuple[dict[str, float], int]:
        """Sums (of per-sample losses, metrics) and the sample count, each added up over the
        ranks in float64: the same totals on every rank, so their ratio is the mean over all."""
        if self.world_size == 1:
            return dict(sums), count
        buffer = torch.tensor([count, *sums.values()], dtype=torch.float64, device=self.device)
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM, group=self.group)
        count_all, *totals = buffer.tolist()
        return dict(zip(sums, totals)), int(count_all)

    def first_nonfinite(self, value: float) -> int | None:
        """The lowest rank whose ``value`` is NaN or infinite, or None when every rank's is finite.

        Every rank gets the same answer, so they all step or all refuse: a rank that refused
        alone would leave the others waiting in ``backward`` for gradients that never come."""
        bad = self.rank if not math.isfinite(value) else self.world_size
        if self.world_size == 1:
            return None if bad == self.world_size else bad
        flag = torch.tensor([bad], dtype=torch.int64, device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=self.group)
        first = int(flag.item())
        return None if first == self.world_size else first


def _collective_device(group: Any) -> torch.device:
    """NCCL reduces CUDA tensors only; gloo and the others take CPU tensors."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def replicas(model: nn.Module) -> Replicas:
    """Who trains ``model``: its process group if it is a ``DistributedDataParallel``, else this
    process alone."""
    if not isinstance(model, DistributedDataParallel):
        return Replicas()
    group = model.process_group
    return Replicas(
        dist.get_rank(group), dist.get_world_size(group), group, _collective_device(group)
    )


def _world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def wrap(model: nn.Module, device: torch.device | str | None = None) -> DistributedDataParallel:
    """``model`` in ``DistributedDataParallel`` on the default process group (unchanged if it is
    one already). DDP copies rank 0's weights to every rank, so all replicas start alike.

    Args:
        model: the module, already on ``device``.
        device: the one device of this rank's replica (``cuda:k``), or the CPU; default the
            device of the model's first parameter.
    """
    if isinstance(model, DistributedDataParallel):
        return model
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "fit: ddp=True expects torch.distributed to be initialised (run under torchrun or "
            "torch.multiprocessing.spawn and call torch.distributed.init_process_group first), "
            "got no process group"
        )
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    device_ids = [device] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def start_epoch(data: Any, epoch: int) -> None:
    """Tell a ``DistributedSampler`` (behind a ``DataLoader`` or :class:`ShardedBatches`) which
    epoch begins, so that it shuffles differently every epoch and alike on every rank."""
    inner = data.batches if isinstance(data, ShardedBatches) else data
    for sampler in (getattr(inner, "sampler", None), getattr(inner, "batch_sampler", None)):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)


# --------------------------------------------------------------------------------------------------
# Splitting the data
# --------------------------------------------------------------------------------------------------


class ShardedBatches:
    """This rank's share of every batch; see :func:`shard_batches`. Re-iterable, ``len()`` as
    the batches it wraps."""

    def __init__(
        self,
        batches: Iterable[Any],
        rank: int | None = None,
        world_size: int | None = None,
        dim: int = 0,
    ) -> None:
        where = "shard_batches"
        default_rank, default_world = _world()
        self.world_size = check_int(
            where, "world_size", default_world if world_size is None else world_size, 1
        )
        self.rank = check_int(where, "rank", default_rank if rank is None else rank, 0)
        if self.rank >= self.world_size:
            raise ValueError(f"{where}: expected rank < world_size {self.world_size}, got {rank}")
        self.dim = check_int(where, "dim", dim, 0)
        if _is_one_batch(batches):
            batches = [batches]
        if not isinstance(batches, Iterable) or isinstance(batches, (Tensor, Iterator)):
            raise TypeError(
                f"{where}: expected a re-iterable of batches (a list, a DataLoader, "
                f"lm_batches(...)), got {type(batches).__name__}"
            )
        self.batches = batches
        first = next(iter(batches), None)
        #: Rows of the first batch over all ranks (None for empty data).
        self.global_batch = None if first is None else self._rows(first, 0)
        if self.global_batch is not None:
            self._check_divides(self.global_batch, 0)

    def _rows(self, batch: Any, index: int) -> int:
        sizes = {t.shape[self.dim] for t in _tensors(batch, self.dim, index)}
        if len(sizes) != 1:
            raise ValueError(
                f"shard_batches: expected every tensor of batch {index} to have the same size "
                f"along dim {self.dim} (the samples to split), got sizes {sorted(sizes)}"
            )
        return sizes.pop()

    def _check_divides(self, rows: int, index: int) -> None:
        if rows % self.world_size:
            fits = [w for w in range(1, rows + 1) if rows % w == 0]
            raise ValueError(
                f"shard_batches: batch {index} has {rows} samples, which do not split evenly "
                f"over {self.world_size} ranks; an uneven split would weight the ranks' gradients "
                f"unequally. Use a world size that divides {rows} ({fits}) or a batch size that "
                f"{self.world_size} divides (drop_last=True drops a short last batch)"
            )

    def shard(self, batch: Any, index: int = 0) -> Any:
        """This rank's rows of one batch: every tensor sliced along ``dim``."""
        rows = self._rows(batch, index)
        self._check_divides(rows, index)
        share = rows // self.world_size
        return _slice(batch, self.dim, self.rank * share, (self.rank + 1) * share)

    def __iter__(self) -> Iterator[Any]:
        for index, batch in enumerate(self.batches):
            yield self.shard(batch, index)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return (
            f"ShardedBatches(rank {self.rank} of {self.world_size}, global batch "
            f"{self.global_batch}, along dim {self.dim})"
        )


def shard_batches(
    batches: Iterable[Any], rank: int | None = None, world_size: int | None = None, dim: int = 0
) -> ShardedBatches:
    """Split every batch evenly across the ranks: rank r gets samples ``[r n, (r + 1) n)`` of each,
    with ``n`` the batch size over the number of ranks.

    Every rank iterates the same global batches (build them the same way on every rank, with the
    same seed for a shuffling ``DataLoader``) and keeps its own rows. The global batch, and so each
    step, does not depend on the number of ranks. For the stateful batches of
    :func:`companion.data.lm_batches`, rank r keeps the same rows of every batch, i.e. the same
    text streams, and carries their hidden states from batch to batch.

    Args:
        batches: a re-iterable of batches (tuples of tensors, ``(x, y)`` or ``((x, lengths), y)``),
            or one batch ``(x, y)``; e.g. ``lm_batches(ids, 32, 32)`` with x, y ``(N, T)``.
        rank, world_size: this process and the number of processes; default those of the
            initialised default process group, or 0 and 1 without one (the batches unchanged).
        dim: the sample dimension of every tensor (0 batch-first; 1 for time-major ``(T, N, ...)``).

    Returns:
        A :class:`ShardedBatches` yielding, for a batch x ``(N, ...)``, x ``(N / W, ...)``.

    Raises:
        ValueError: if a batch's size is not a multiple of the world size, naming the world sizes
            that divide it; or if the tensors of a batch differ in size along ``dim``.
    """
    return ShardedBatches(batches, rank, world_size, dim)


def _is_one_batch(data: Any) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) >= 2
        and all(isinstance(d, Tensor) for d in data)
    )


def _tensors(batch: Any, dim: int, index: int) -> list[Tensor]:
    if isinstance(batch, Tensor):
        if batch.dim() <= dim:
            raise ValueError(
                f"shard_batches: expected tensors with a sample dimension {dim}, got a tensor of "
                f"shape {tuple(batch.shape)} in batch {index}"
            )
        return [batch]
    if isinstance(batch, (tuple, list)) and not hasattr(batch, "batch_sizes"):
        return [t for item in batch for t in _tensors(item, dim, index)]
    if isinstance(batch, Mapping):
        return [t for item in batch.values() for t in _tensors(item, dim, index)]
    raise TypeError(
        f"shard_batches: expected batches of tensors (tuples, lists or dicts of them), got "
        f"{type(batch).__name__} in batch {index}; pad packed sequences and pack them in the model"
    )


def _slice(batch: Any, dim: int, start: int, stop: int) -> Any:
    if isinstance(batch, Tensor):
        return batch.narrow(dim, start, stop - start)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_slice(b, dim, start, stop) for b in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(_slice(b, dim, start, stop) for b in batch)
    return {k: _slice(v, dim, start, stop) for k, v in batch.items()}


def global_batch(data: Any) -> int | None:
    """Samples per step over all ranks: a :class:`ShardedBatches`'s global batch, or a
    ``DataLoader``'s batch size times the world size (its sampler splits the dataset); None when
    it cannot be told."""
    if isinstance(data, ShardedBatches):
        return data.global_batch
    size = getattr(data, "batch_size", None)
    if isinstance(size, int) and size > 0:
        return size * _world()[1]
    return None


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def save_checkpoint(
    path: PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    history: Any = None,
    config: Mapping[str, Any] | None = None,
    *,
    scheduler: Any = None,
    data: Any = None,
) -> None:
    """:func:`companion.checkpoints.save_checkpoint` from a distributed run; call it on every rank.

    Rank 0 writes the unwrapped model (its state dict has no ``module.`` prefix, so it loads into
    a plain model), the optimizer, history, config and rank 0's random generators, with the world
    size and the global batch of ``data`` (the training batches) under ``"distributed"``; the
    other ranks wait until the file is complete, so any rank may read it right after. The states
    are those of every rank, since DDP keeps the replicas equal.
    """
    rank, world_size = _world()
    if rank == 0:
        layout = {"world_size": world_size, "global_batch": global_batch(data)}
        checkpoints.save_checkpoint(
            path, unwrap(model), optimizer, history, config, scheduler=scheduler, extra=layout
        )
    if world_size > 1:
        dist.barrier()


def load_checkpoint(
    path: PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    map_location: Any = None,
    *,
    scheduler: Any = None,
    restore_rng: bool = False,
    data: Any = None,
) -> dict[str, Any]:
    """:func:`companion.checkpoints.load_checkpoint` on every rank, under any world size.

    With ``data`` (the training batches of the resumed run), it first checks that they keep the
    global batch the checkpoint was trained with, and raises a ``ValueError`` that says so when
    they do not: the learning rate and the noise of every step belong to that batch size, and a
    run that changed it would not continue the same optimisation. ``restore_rng`` gives every rank
    rank 0's generators, as the run that saved had them.

    Returns:
        As :func:`companion.checkpoints.load_checkpoint`, with ``"distributed"``: the saving
        run's ``{"world_size", "global_batch"}`` (None for a file saved without it).
    """
    saved = checkpoints.load_checkpoint(
        path,
        unwrap(model),
        optimizer,
        map_location,
        scheduler=scheduler,
        restore_rng=restore_rng,
        check_extra=lambda extra: _check_layout(path, extra, data),
    )
    saved["distributed"] = saved.pop("extra", None)
    return saved


def _check_layout(path: PathLike, layout: Any, data: Any) -> None:
    if data is None or not isinstance(layout, Mapping):
        return
    before, now = layout.get("global_batch"), global_batch(data)
    if before is not None and now is not None and before != now:
        world_size = data.world_size if isinstance(data, ShardedBatches) else _world()[1]
        raise ValueError(
            f"load_checkpoint: {path} was trained with a global batch of {before} samples on "
            f"{layout.get('world_size')} ranks; the resumed data gives {now} on {world_size}. "
            f"Resuming would change the optimisation: keep the global batch (shard_batches over "
            f"the same batches, or a per-rank batch size of {before} / {world_size})"
        )
