"""Exactness of the distributed contrastive loss: 2 gloo processes, each scoring its local
queries against keys gathered with gradient, with DDP's gradient average, produce the same
parameter gradients as one process computing the loss on the concatenated global batch."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from simcit_dist.tokenizer import SimCIT, SimCITConfig, TemperatureSchedule
from simcit_dist.tokenizer_training.codebook_health import synced_dead_code_reset
from simcit_dist.train.gather import AllGatherWithGrad

DIMS = {"emb_a": 6, "emb_b": 5}
B_LOCAL, WORLD = 8, 2


def _model() -> SimCIT:
    torch.manual_seed(0)
    cfg = SimCITConfig(hidden_dims=[16], latent_dim=8, proj_dim=8, num_levels=2, codebook_size=4,
                       gumbel_scale=0.0, temperature=TemperatureSchedule(start=0.5, floor=0.5))
    return SimCIT(cfg, DIMS)


def _global_batch(with_duplicates: bool, with_partner: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    n = B_LOCAL * WORLD
    batch = {m: torch.randn(n, d, generator=g) for m, d in DIMS.items()}
    ids = torch.arange(100, 100 + n)
    if with_duplicates:  # the same item on both ranks and twice on rank 0: false negatives
        ids[B_LOCAL + 2] = ids[1]
        ids[3] = ids[1]
        batch["emb_a"][[3, B_LOCAL + 2]] = batch["emb_a"][1].clone()
    batch["item_id"] = ids
    batch["emb_b"][5] = float("nan")  # a missing modality
    if with_partner:
        batch["partner_item_id"] = torch.where(torch.arange(n) % 3 == 0, torch.tensor(-1), ids.flip(0))
        for m, d in DIMS.items():
            batch[f"partner:{m}"] = torch.randn(n, d, generator=g)
    return batch


def _grads(model: SimCIT) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _worker(rank: int, port: int, state: dict, batch: dict, out_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    model = _model()
    model.load_state_dict(state)
    local = {k: v[rank * B_LOCAL:(rank + 1) * B_LOCAL] for k, v in batch.items()}
    loss, _ = model.training_loss(local, step=3, total_steps=10, gather=AllGatherWithGrad())
    loss.backward()
    for p in model.parameters():  # what DDP does: average gradients over ranks
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= WORLD
    total = loss.detach().clone()
    dist.all_reduce(total)
    if rank == 0:
        torch.save({"grads": _grads(model), "loss": total / WORLD}, out_path)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("with_duplicates", "with_partner"), [(False, False), (True, True)],
                         ids=["plain", "false-negatives+partner"])
def test_two_process_gradients_equal_single_process(tmp_path, with_duplicates: bool, with_partner: bool) -> None:
    batch = _global_batch(with_duplicates, with_partner)
    model = _model()
    model.init_codebooks(batch)  # same initialised codebooks everywhere
    state = {k: v.clone() for k, v in model.state_dict().items()}
    loss, _ = model.training_loss(batch, step=3, total_steps=10)
    loss.backward()
    expected = _grads(model)
    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(_free_port(), state, batch, str(out)), nprocs=WORLD, join=True)
    got = torch.load(out)
    assert torch.allclose(got["loss"], loss.detach(), atol=1e-5), (float(got["loss"]), float(loss))
    assert set(got["grads"]) == set(expected)
    worst = max(float((got["grads"][n] - expected[n]).abs().max()) for n in expected)
    assert worst < 1e-5, f"max |grad diff| = {worst}"
    assert any(float(g.abs().max()) > 1e-3 for g in expected.values())  # gradients are not trivially zero


def _reset_worker(rank: int, port: int, state: dict, batch: dict, out_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    model = _model()
    model.load_state_dict(state)
    local = {k: v[rank * B_LOCAL:(rank + 1) * B_LOCAL] for k, v in batch.items()}
    model.quantizer.add_usage(model.encode(local))  # rank-local usage: differs between ranks
    reset = synced_dead_code_reset(model, local, seed=7, device=torch.device("cpu"))
    torch.save({"codebooks": model.quantizer.codebooks.detach().clone(), "reset": reset}, f"{out_path}.{rank}")
    dist.destroy_process_group()


def test_dead_code_reset_keeps_replicas_identical(tmp_path) -> None:
    batch = _global_batch(with_duplicates=False, with_partner=False)
    model = _model()
    model.init_codebooks(batch)
    with torch.no_grad():  # make codeword 3 of every level unreachable: it must be reset
        model.quantizer.codebooks[:, 3] = 1e3
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out = tmp_path / "reset"
    mp.spawn(_reset_worker, args=(_free_port(), state, batch, str(out)), nprocs=WORLD, join=True)
    r0, r1 = torch.load(f"{out}.0"), torch.load(f"{out}.1")
    assert r0["reset"] == r1["reset"] >= 2
    assert torch.equal(r0["codebooks"], r1["codebooks"])
    assert float(r0["codebooks"][:, 3].abs().max()) < 100  # moved onto real residuals


PRIMITIVE_WORLD, ROWS = 3, 4


def _primitive_worker(rank: int, port: int, out_path: str) -> None:
    """Each rank's inputs and upstream gradients are ``_rank_tensors(rank)``; FutureWarnings are
    errors, so a deprecated collective fails the test."""
    import warnings

    warnings.simplefilter("error", FutureWarning)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=PRIMITIVE_WORLD)
    t, up_gather, blocks, up_exchange = (x.clone() for x in _rank_tensors(rank))
    t.requires_grad_(True)
    blocks.requires_grad_(True)
    gather = AllGatherWithGrad()
    gathered = gather(t)
    exchanged = gather.exchange(blocks)
    ((gathered * up_gather).sum() + (exchanged * up_exchange).sum()).backward()
    torch.save({"gathered": gathered.detach(), "exchanged": exchanged.detach(), "t_grad": t.grad,
                "blocks_grad": blocks.grad}, f"{out_path}.{rank}")
    dist.destroy_process_group()


def _rank_tensors(rank: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(100 + rank)
    return (torch.randn(ROWS, 5, generator=g), torch.randn(PRIMITIVE_WORLD * ROWS, 5, generator=g),
            torch.randn(PRIMITIVE_WORLD, 2, 3, generator=g), torch.randn(PRIMITIVE_WORLD, 2, 3, generator=g))


def test_gather_and_exchange_values_and_gradients_on_three_ranks(tmp_path) -> None:
    """Gather: every rank gets all ranks' rows in rank order; a rank's rows get the sum of every
    rank's upstream gradient for them. Exchange: block r of rank s lands at [s] on rank r; its
    gradient goes back the same way."""
    out = tmp_path / "prim"
    mp.spawn(_primitive_worker, args=(_free_port(), str(out)), nprocs=PRIMITIVE_WORLD, join=True)
    got = [torch.load(f"{out}.{r}") for r in range(PRIMITIVE_WORLD)]
    ins = [_rank_tensors(r) for r in range(PRIMITIVE_WORLD)]
    everyone = torch.cat([x[0] for x in ins])
    for r in range(PRIMITIVE_WORLD):
        own = slice(r * ROWS, (r + 1) * ROWS)
        assert torch.equal(got[r]["gathered"], everyone)
        torch.testing.assert_close(got[r]["t_grad"], sum(x[1][own] for x in ins))
        assert torch.equal(got[r]["exchanged"], torch.stack([ins[s][2][r] for s in range(PRIMITIVE_WORLD)]))
        assert torch.equal(got[r]["blocks_grad"], torch.stack([ins[s][3][r] for s in range(PRIMITIVE_WORLD)]))
