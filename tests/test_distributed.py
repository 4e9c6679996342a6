"""companion.distributed and fit under torch.distributed: 2 processes on the CPU with gloo.

One spawn of 2 ranks (module fixture ``two_ranks``) runs every scenario and stores what each rank
ended with; the tests compare it with the same runs on this one process:

- stateful truncated BPTT, the model wrapped by ``fit(..., ddp=True)``: the same weights and
  history as one process over the same global batches;
- a NaN in rank 1's share of a batch: both ranks refuse that step, with the weights of the step
  before, as one process does;
- a checkpoint written by 2 ranks (model wrapped by the caller) resumes on 1 process and ends
  where the 2 ranks ended.
"""

from __future__ import annotations

import datetime
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from companion import distributed
from companion.data import lm_batches
from companion.distributed import shard_batches
from companion.train import fit

WORLD = 2
TOL = 1e-5  # float32 sums in another order, over a few Adam steps
V, ROWS, BPTT = 11, 8, 6


class TinyLM(nn.Module):
    """Embedding -> GRU -> linear head; forward(x (N, L), state) -> (scores (N, L, V), state)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(V, 8)
        self.rnn = nn.GRU(8, 16, batch_first=True)
        self.head = nn.Linear(16, V)

    def forward(self, x, state=None):
        out, state = self.rnn(self.embed(x), state)
        return self.head(out), state


def lm_loss(scores, y):
    return nn.functional.cross_entropy(scores.reshape(-1, V), y.reshape(-1))


def lm_data():
    """Global batches of (ROWS, BPTT): 6 for training, 2 for validation."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (ROWS * (6 * BPTT + 1) + ROWS * (2 * BPTT + 1),), generator=g)
    cut = ROWS * (6 * BPTT + 1)
    return lm_batches(ids[:cut], ROWS, BPTT), lm_batches(ids[cut:], ROWS, BPTT)


def new_lm():
    torch.manual_seed(0)
    model = TinyLM()
    return model, torch.optim.Adam(model.parameters(), lr=1e-2)


def nan_data():
    """3 global batches of 8 rows for a linear regression; batch 2 has a NaN in row 6, which
    shard_batches gives to rank 1 of 2."""
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(24, 4, generator=g), torch.randn(24, 1, generator=g)
    x[8 + 6, 2] = float("nan")
    return [(x[i : i + 8], y[i : i + 8]) for i in range(0, 24, 8)]


def new_linear():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in distributed.unwrap(model).state_dict().items()}


def records(history) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in history]


LM_FIT = dict(loss_fn=lm_loss, stateful=True, clip_grad_norm=1.0, progress=False)


# --------------------------------------------------------------------------------------------------
# What each rank runs
# --------------------------------------------------------------------------------------------------


def scenarios(rank: int, folder: Path) -> dict:
    out: dict = {}
    train, val = lm_data()
    model, opt = new_lm()
    history = fit(
        model, shard_batches(train), optimizer=opt, epochs=2, val_data=shard_batches(val),
        ddp=True, **LM_FIT,
    )  # fmt: skip
    out["lm"] = {"weights": weights(model), "records": records(history)}

    model, opt = new_linear()
    before = weights(model)
    try:
        fit(model, shard_batches(nan_data()), loss_fn=nn.MSELoss(), optimizer=opt, epochs=1,
            ddp=True, progress=False)  # fmt: skip
        out["nan"] = {"error": None}
    except FloatingPointError as err:
        out["nan"] = {"error": str(err), "records": records(err.history)}
    out["nan"].update(
        weights=weights(model),
        moved=any(not torch.equal(v, before[k]) for k, v in weights(model).items()),
    )

    model, opt = new_lm()
    ddp_model = distributed.wrap(model)  # wrapped by the caller this time
    sharded = shard_batches(train)
    history = fit(ddp_model, sharded, optimizer=opt, epochs=1, **LM_FIT)
    distributed.save_checkpoint(folder / "lm.pt", ddp_model, opt, history, data=sharded)
    history = fit(ddp_model, sharded, optimizer=opt, epochs=1, history=history, **LM_FIT)
    out["resume"] = {"weights": weights(model), "records": records(history)}
    return out


def _worker(rank: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),  # a rank left waiting fails instead of hanging
    )
    try:
        torch.save(scenarios(rank, Path(folder)), Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[list[dict], Path]:
    folder = tmp_path_factory.mktemp("ranks")
    context = mp.spawn(_worker, args=(_free_port(), str(folder)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the 2 ranks did not finish within 120 s (a rank waiting for another?)")
    results = [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    return results, folder


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=TOL, rtol=TOL, msg=key)


def assert_records_close(a: list[dict], b: list[dict]) -> None:
    assert [r.keys() for r in a] == [r.keys() for r in b]
    for ra, rb in zip(a, b):
        for key in ra:
            assert ra[key] == pytest.approx(rb[key], rel=TOL, abs=TOL), key


# --------------------------------------------------------------------------------------------------
# 2 ranks against 1 process
# --------------------------------------------------------------------------------------------------


def test_two_ranks_end_with_the_weights_of_one_process(two_ranks):
    (rank0, rank1), _ = two_ranks
    train, val = lm_data()
    model, opt = new_lm()
    history = fit(model, train, optimizer=opt, epochs=2, val_data=val, **LM_FIT)
    # DDP averages the gradients, so the replicas take the same steps, bit for bit.
    for key, value in rank0["lm"]["weights"].items():
        assert torch.equal(value, rank1["lm"]["weights"][key]), key
    assert_close(rank0["lm"]["weights"], weights(model))
    assert not torch.equal(rank0["lm"]["weights"]["head.weight"], new_lm()[0].head.weight)
    # The losses are over all ranks' samples: the one process's, on every rank.
    assert rank0["lm"]["records"] == rank1["lm"]["records"]
    assert_records_close(rank0["lm"]["records"], records(history))


def test_a_nan_on_one_rank_stops_both_with_the_weights_untouched(two_ranks):
    (rank0, rank1), _ = two_ranks
    model, opt = new_linear()
    with pytest.raises(FloatingPointError, match="batch 2") as one:
        fit(model, nan_data(), loss_fn=nn.MSELoss(), optimizer=opt, epochs=1, progress=False)
    assert "batch 2 on rank 1 of 2" in rank0["nan"]["error"]
    assert "training loss became nan" in rank1["nan"]["error"]  # rank 1 saw its own NaN
    assert "non-finite" in rank0["nan"]["error"]  # rank 0 was told
    assert rank0["nan"]["moved"] and rank0["nan"]["records"] == [] == records(one.value.history)
    # Both stopped before the step of batch 2: the weights after batch 1, as on one process.
    for key, value in rank0["nan"]["weights"].items():
        assert torch.equal(value, rank1["nan"]["weights"][key]), key
    assert_close(rank0["nan"]["weights"], weights(model))


def test_a_checkpoint_saved_on_two_ranks_resumes_on_one(two_ranks):
    (rank0, _), folder = two_ranks
    train, _ = lm_data()
    model, opt = new_lm()
    saved = distributed.load_checkpoint(
        folder / "lm.pt", model, opt, restore_rng=True, data=shard_batches(train)
    )
    assert saved["distributed"] == {"world_size": 2, "global_batch": ROWS}
    history = fit(model, train, optimizer=opt, epochs=1, history=saved["history"], **LM_FIT)
    assert [r["epoch"] for r in history] == [1, 2]
    assert_close(rank0["resume"]["weights"], weights(model))
    assert_records_close(rank0["resume"]["records"], records(history))
    # A run that would change the global batch is refused, with the model untouched.
    smaller = lm_batches(torch.arange(200) % V, ROWS // 2, BPTT)
    fresh, _ = new_lm()
    with pytest.raises(ValueError, match=r"global batch of 8 samples on 2 ranks.*gives 4 on 1"):
        distributed.load_checkpoint(folder / "lm.pt", fresh, data=shard_batches(smaller))
    assert_close(weights(fresh), weights(new_lm()[0]))


# --------------------------------------------------------------------------------------------------
# One process: splitting the data, and the errors
# --------------------------------------------------------------------------------------------------


def test_shards_are_the_rows_of_every_batch_and_keep_the_streams():
    train, _ = lm_data()
    shards = [shard_batches(train, rank=r, world_size=2) for r in range(2)]
    assert len(shards[0]) == len(train) and shards[1].global_batch == ROWS
    for k, (x, y) in enumerate(train):
        (x0, y0), (x1, y1) = shards[0].shard((x, y), k), shards[1].shard((x, y), k)
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    # Each rank's rows continue from batch to batch: its carried state stays right.
    (x_a, y_a), (x_b, _) = list(shards[1])[:2]
    assert x_a.shape == (ROWS // 2, BPTT) and torch.equal(x_b[:, 0], y_a[:, -1])
    # Without a process group: rank 0 of 1, the batches unchanged.
    alone = shard_batches(train)
    assert (alone.rank, alone.world_size) == (0, 1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(alone, train))


def test_shards_of_time_major_and_nested_batches():
    # Time-major (L, N, ...): the samples are along dim 1.
    x, y = torch.randn(5, 4, 3), torch.randn(5, 4)
    xs, ys = next(iter(shard_batches([(x, y)], rank=1, world_size=2, dim=1)))
    assert torch.equal(xs, x[:, 2:]) and torch.equal(ys, y[:, 2:])
    # ((padded, lengths), y) keeps its nesting; lengths are split with their rows.
    padded, lengths, labels = torch.randn(4, 5, 3), torch.tensor([5, 4, 3, 2]), torch.arange(4)
    (p1, n1), y1 = next(iter(shard_batches([((padded, lengths), labels)], rank=1, world_size=2)))
    assert torch.equal(p1, padded[2:]) and n1.tolist() == [3, 2] and y1.tolist() == [2, 3]


def test_uneven_splits_and_bad_input_are_refused():
    train, _ = lm_data()
    with pytest.raises(ValueError, match=r"8 samples.*over 3 ranks.*\[1, 2, 4, 8\]"):
        shard_batches(train, rank=0, world_size=3)
    short = [(torch.zeros(8, 2), torch.zeros(8)), (torch.zeros(6, 2), torch.zeros(6))]
    with pytest.raises(ValueError, match="batch 1 has 6 samples.*over 4 ranks.*drop_last"):
        list(shard_batches(short, rank=0, world_size=4))
    with pytest.raises(ValueError, match="expected rank < world_size 2"):
        shard_batches(train, rank=2, world_size=2)
    with pytest.raises(TypeError, match="re-iterable"):
        shard_batches(iter(train))
    with pytest.raises(ValueError, match=r"same size along dim 0.*\[3, 8\]"):
        shard_batches([(torch.zeros(8, 2), torch.zeros(3))], rank=0, world_size=2)


def test_ddp_without_a_process_group_says_how_to_start_one():
    model, opt = new_linear()
    with pytest.raises(RuntimeError, match="ddp=True expects torch.distributed.*torchrun"):
        fit(model, nan_data()[:1], loss_fn=nn.MSELoss(), optimizer=opt, epochs=1, ddp=True)
    assert distributed.replicas(model) == distributed.Replicas()
    assert distributed.Replicas().first_nonfinite(float("inf")) == 0
    assert distributed.Replicas().first_nonfinite(1.0) is None


def test_fit_tells_a_distributed_sampler_the_epoch():
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    x, y = torch.randn(16, 4), torch.randn(16, 1)
    dataset = TensorDataset(x, y)
    sampler = DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=4, sampler=sampler)
    orders = []
    model, opt = new_linear()
    for _ in range(2):  # one epoch per call; history carries the epoch number on
        fit(model, loader, loss_fn=nn.MSELoss(), optimizer=opt, epochs=1, progress=False)
        orders.append(list(sampler))
    history = fit(model, loader, loss_fn=nn.MSELoss(), optimizer=opt, epochs=3, progress=False)
    assert sampler.epoch == 3 and len(history) == 3
    assert orders[0] == orders[1]  # epoch 1 both times: the same shuffle
    assert list(sampler) != orders[0] and len(orders[0]) == 8  # rank 1's half, reshuffled
    assert distributed.global_batch(loader) == 4  # no process group: one rank
