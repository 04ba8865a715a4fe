"""The Ray Train worker loop of tokenizer training (DDP, global-batch negatives, resumable).

Shape of Ray's own examples: ``train_loop_per_worker(config)`` reads its dataset shard,
restores ``ray.train.get_checkpoint()`` when there is one, and calls ``ray.train.report`` every
``log_every`` steps (with a checkpoint every ``checkpoint_every``). All ranks call ``report``
the same number of times (it is a barrier); only rank 0 attaches checkpoints.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import ray.data
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from simcit_dist.tokenizer import build_tokenizer
from simcit_dist.tokenizer.train_utils import adamw
from simcit_dist.tokenizer_training.codebook_health import synced_dead_code_reset
from simcit_dist.tokenizer_training.data import TokenizerCollate
from simcit_dist.tokenizer_training.evaluation import evaluate_holdout, write_outputs
from simcit_dist.tokenizer_training.plan import TokenizerPlan
from simcit_dist.train.gather import AllGatherWithGrad, all_reduce_mean
from simcit_dist.train.lr_schedule import build_scheduler
from simcit_dist.train.run import checkpoint_dir_name, unregistered_checkpoints
from simcit_dist.train.state import TrainState, load_state, save_state
from simcit_dist.train.worker import start_worker

log = logging.getLogger(__name__)




def train_loop_per_worker(config: dict[str, Any]) -> None:
    plan: TokenizerPlan = config["plan"]
    cfg = plan.cfg
    rank, world = start_worker(cfg.train)
    ray.data.DataContext.get_current().enable_progress_bars = False  # one progress line (ours) per run
    torch.manual_seed(cfg.data.seed)  # identical initial weights on every rank
    device = ray.train.torch.get_device()

    tokenizer = build_tokenizer(cfg.tokenizer, plan.input_dims)
    assert isinstance(tokenizer, nn.Module), "gradient-trained tokenizers are nn.Modules"
    tokenizer.to(device)
    optimizer = adamw(tokenizer.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = build_scheduler(optimizer, plan.total_steps, cfg.train.warmup_steps, cfg.train.lr_schedule,
                                cfg.train.min_lr_ratio)
    state = TrainState()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = load_state(d, tokenizer, optimizer, scheduler)
        log.info("resumed from step %d (epoch %d, batch %d)", state.step, state.epoch, state.step_in_epoch)
    if rank == 0:
        _report_unregistered(cfg, state.step)

    shard = ray.train.get_dataset_shard("train")
    collate = TokenizerCollate(list(plan.input_dims), plan.with_partner, str(device))
    batches = _batches(shard, plan, state, collate)
    first = next(batches, None) if state.step < plan.total_steps else None
    if first is None and checkpoint is None:
        raise RuntimeError("the training shard yielded no full batch; lower train.batch_size")
    if first is None:  # the same command re-run after the run finished: nothing left to train
        log.info("checkpoint at step %d of %d: nothing left to train", state.step, plan.total_steps)
        _finish(plan, tokenizer, state, rank, device)
        return
    if checkpoint is None:
        _init_codebooks(tokenizer, first[2], rank)
        if rank == 0:  # the untrained (initialised) tokenizer: the "before" of the end-of-run metrics
            tokenizer.eval()
            state.baseline = {k.replace("holdout/", "holdout_untrained/"): v for k, v in
                        evaluate_holdout(tokenizer, ray.train.get_dataset_shard("holdout"), plan, device)[0].items()
                        if k.startswith("holdout/")}
            tokenizer.train()
    model: nn.Module = tokenizer  # its forward is training_loss, so DDP's hooks see the loss step
    if world > 1:  # wrapping broadcasts rank 0's parameters and buffers (incl. initialised codebooks)
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    gather = AllGatherWithGrad() if world > 1 else None
    loop = _Loop(plan, model, tokenizer, optimizer, scheduler, state, gather, device, world)
    if checkpoint is None and config.get("fail_at_step"):  # tests: a worker dies mid-run, once
        loop.fail_at = (int(config["fail_at_step"]), min(1, world - 1))
    loop.run(_chain(first, batches))
    _finish(plan, tokenizer, state, rank, device)


def _batches(shard: Any, plan: TokenizerPlan, state: TrainState,
             collate: TokenizerCollate) -> Iterator[tuple[int, int, dict[str, Tensor]]]:
    """(epoch, batch index in epoch, batch) from the saved data position onwards."""
    cfg = plan.cfg
    for epoch in range(state.epoch, plan.epochs):
        it = shard.iter_torch_batches(
            batch_size=plan.local_batch, drop_last=True, collate_fn=collate,
            local_shuffle_buffer_size=cfg.data.shuffle_buffer or None,
            local_shuffle_seed=cfg.data.seed + epoch if cfg.data.shuffle_buffer else None,
        )
        skip = state.step_in_epoch if epoch == state.epoch else 0
        for i, batch in enumerate(it):
            if i >= skip:
                yield epoch, i, batch


def _chain(first: tuple[int, int, dict[str, Tensor]],
           rest: Iterator[tuple[int, int, dict[str, Tensor]]]) -> Iterator[tuple[int, int, dict[str, Tensor]]]:
    yield first
    yield from rest


def _init_codebooks(tokenizer: nn.Module, batch: dict[str, Tensor], rank: int) -> None:
    """Data-dependent codebook init (k-means on the first batch) on rank 0 only; DDP then
    broadcasts rank 0's codebooks so every replica starts identical."""
    init = getattr(tokenizer, "init_codebooks", None)
    if init is not None and rank == 0:
        with torch.no_grad():
            init(batch)


class _Loop:
    """One optimizer step per batch; metrics, progress line and checkpoints on schedule."""

    def __init__(self, plan: TokenizerPlan, model: nn.Module, tokenizer: nn.Module,
                 optimizer: torch.optim.Optimizer, scheduler: Any, state: TrainState, gather: Any,
                 device: torch.device, world: int) -> None:
        self.plan, self.model, self.tokenizer = plan, model, tokenizer
        self.optimizer, self.scheduler, self.state = optimizer, scheduler, state
        self.gather, self.device, self.world = gather, device, world
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        tcfg = plan.cfg.train
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tcfg.mixed_precision)
        self.autocast = (torch.autocast(device_type="cuda", dtype=dtype) if dtype is not None
                         else contextlib.nullcontext())
        self.scaler = torch.amp.GradScaler("cuda") if tcfg.mixed_precision == "fp16" else None
        self.window_start = time.perf_counter()
        self.window_steps = 0
        self.run_start = time.perf_counter()
        self.start_step = state.step
        self.fail_at: tuple[int, int] | None = None  # (step, rank) that raises (fault injection)

    def run(self, batches: Iterator[tuple[int, int, dict[str, Tensor]]]) -> None:
        tcfg = self.plan.cfg.train
        sums: dict[str, float] = {}
        for epoch, index, batch in batches:
            if self.state.step >= self.plan.total_steps:
                break
            if self.fail_at is not None and (self.state.step, self.rank) == self.fail_at:
                raise RuntimeError(f"injected worker failure at step {self.state.step} on rank {self.rank}")
            metrics = self._step(batch)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            self.state.epoch, self.state.step_in_epoch = epoch, index + 1
            self.state.step += 1
            self.window_steps += 1
            done = self.state.step >= self.plan.total_steps
            if self.state.step % tcfg.log_every == 0 or done:
                averaged = {k: v / self.window_steps for k, v in sums.items()}
                self._report(averaged, checkpoint=self.state.step % tcfg.checkpoint_every == 0 or done)
                sums = {}
            elif self.state.step % tcfg.checkpoint_every == 0:
                self._report({}, checkpoint=True)
        if self.window_steps:  # the data ended before total_steps: report and checkpoint the tail
            self._report({k: v / self.window_steps for k, v in sums.items()}, checkpoint=True)

    def _step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        self.model.train()
        with self.autocast:
            loss, metrics = self.model(batch, self.state.step, self.plan.total_steps, self.gather)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        clip = self.plan.cfg.train.grad_clip
        if clip > 0:
            metrics["grad_norm"] = float(nn.utils.clip_grad_norm_(self.tokenizer.parameters(), clip))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self._maybe_reset_dead_codes(batch, metrics)
        metrics["loss"] = float(loss.detach())
        metrics["lr"] = self.scheduler.get_last_lr()[0]
        return metrics

    def _maybe_reset_dead_codes(self, batch: dict[str, Tensor], metrics: dict[str, float]) -> None:
        """Every ``dead_code_every`` steps (when the config asks): see :mod:`.codebook_health`."""
        cfg = getattr(self.tokenizer, "cfg", None)
        every = int(getattr(cfg, "dead_code_every", 0)) if getattr(cfg, "dead_code_reset", False) else 0
        step = self.state.step + 1  # this step's number once counted
        if every and step % every == 0 and step < self.plan.total_steps:
            seed = int(getattr(cfg, "seed", 0)) + step
            metrics["dead_codes_reset"] = float(synced_dead_code_reset(self.tokenizer, batch, seed, self.device))

    def _report(self, averaged: dict[str, float], checkpoint: bool) -> None:
        metrics = all_reduce_mean(averaged, self.device) if averaged else {}
        elapsed = time.perf_counter() - self.window_start
        if averaged:
            items = self.window_steps * self.plan.cfg.train.batch_size
            metrics.update(step=float(self.state.step), epoch=float(self.state.epoch),
                           items_per_s=items / max(elapsed, 1e-9),
                           items_per_s_per_worker=items / max(elapsed, 1e-9) / self.world)
            self.state.history.append(metrics)
            self._progress_line(metrics)
            self.window_start, self.window_steps = time.perf_counter(), 0
        report = {k: v for k, v in metrics.items()}
        report["step"] = float(self.state.step)
        if checkpoint:
            with tempfile.TemporaryDirectory() as d:
                if self.rank == 0:
                    save_state(d, self.tokenizer, self.optimizer, self.scheduler, self.state)
                ckpt = ray.train.Checkpoint.from_directory(d) if self.rank == 0 else None
                ray.train.report(report, checkpoint=ckpt, checkpoint_dir_name=checkpoint_dir_name(self.state.step))
        else:
            ray.train.report(report)

    def _progress_line(self, m: dict[str, float]) -> None:
        done, total = self.state.step, self.plan.total_steps
        rate = (done - self.start_step) / max(time.perf_counter() - self.run_start, 1e-9)
        eta = (total - done) / rate if rate > 0 else math.inf
        extras = " ".join(f"{k}={m[k]:.4g}" for k in sorted(m) if k.startswith(("loss_", "temperature", "ppl")))
        log.info("step %d/%d (%.0f%%) loss=%.4f %s lr=%.2e %.0f items/s ETA %s", done, total, 100 * done / total,
                 m.get("loss", math.nan), extras, m.get("lr", math.nan), m["items_per_s"], _fmt_eta(eta))


def _fmt_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _finish(plan: TokenizerPlan, tokenizer: nn.Module, state: TrainState, rank: int, device: torch.device) -> None:
    """Rank 0 scores the held-back sample and writes the tokenizer artifact; all ranks report last."""
    final: dict[str, float] = {"step": float(state.step), "restores": float(len(state.resumed_from)),
                               **state.baseline}
    if state.resumed_from:
        final["resumed_from_step"] = float(state.resumed_from[-1])
    if rank == 0:
        tokenizer.eval()
        holdout = ray.train.get_dataset_shard("holdout")
        metrics, plots = evaluate_holdout(tokenizer, holdout, plan, device)
        final.update(metrics)
        write_outputs(tokenizer, plan, state, final, plots)
    ray.train.report(final)


def _report_unregistered(cfg: Any, restored_step: int) -> None:
    """Say so when the run's storage holds a newer checkpoint than the one Ray Train restored."""
    newer = unregistered_checkpoints(cfg.run, cfg.storage, restored_step)
    if newer:
        log.warning("%s lie(s) in run %r but Ray Train never registered them: the previous job stopped after "
                    "writing them and before Ray committed them to its run snapshot, so they may be incomplete "
                    "and are not used; training %s and repeats steps %d-%d",
                    ", ".join(checkpoint_dir_name(s) for s in newer), cfg.run.name,
                    f"resumes from step {restored_step}" if restored_step else "starts from step 0",
                    restored_step + 1, newer[-1])
