"""Training/evaluation examples from per-user sequences: a worker's shard, histories, batches.

A worker holds only its shard of users as CSR arrays (``offsets``, ``items``); an example is a
(user, target position) pair and its history is the ``max_history`` items before the target,
gathered with index arithmetic. Shards are contiguous user ranges balanced by training-example
count, and the batch order is a pure function of (seed, epoch, rank): runs that differ only in
ZeRO stage see identical batches, and a resumed run replays an epoch exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from simcit_dist.data.parquet_io import file_rows, parquet_files, read_table
from simcit_dist.recommender.catalog import SidCatalog
from simcit_dist.recommender.config import DataConfig
from simcit_dist.recommender.model import decoder_inputs
from simcit_dist.recommender.sequences import count_examples, split_bounds, target_ranges
from simcit_dist.storage import Location


@dataclass
class UserSequences:
    user_ids: np.ndarray  # (U,) int64
    offsets: np.ndarray  # (U + 1,) int64 into items
    items: np.ndarray  # (T,) int64 item indices, oldest first per user

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def from_table(cls, table: pa.Table) -> UserSequences:
        items = table.column("items")
        items = items.combine_chunks() if isinstance(items, pa.ChunkedArray) else items
        offsets = items.offsets.to_numpy().astype(np.int64)
        values = items.values.to_numpy().astype(np.int64)
        base = offsets[0]
        return cls(table.column("user_id").to_numpy().astype(np.int64), offsets - base,
                   values[base:offsets[-1]])

    def examples(self, cfg: DataConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(user, position) of every target of ``split``: (E,), (E,)."""
        lo, hi = target_ranges(self.lengths, cfg, split)
        counts = hi - lo
        user = np.repeat(np.arange(len(counts)), counts)
        first = np.repeat(np.cumsum(counts) - counts, counts)
        return user, np.repeat(lo, counts) + np.arange(int(counts.sum())) - first

    def histories(self, user: np.ndarray, pos: np.ndarray, max_history: int) -> np.ndarray:
        """(E, H) item indices before each target, left-padded with -1."""
        start = self.offsets[user]
        index = (start + pos)[:, None] - max_history + np.arange(max_history)  # (E, H)
        return np.where(index >= start[:, None], self.items[np.maximum(index, 0)], -1)

    def targets(self, user: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return self.items[self.offsets[user] + pos]

    def train_item_counts(self, cfg: DataConfig, num_items: int) -> np.ndarray:
        """(num_items,) occurrences in the training part of each sequence (for the popularity baseline)."""
        train_end, _ = split_bounds(self.lengths, cfg)
        kept = self.lengths >= cfg.effective_min_interactions
        within = np.arange(len(self.items)) - np.repeat(self.offsets[:-1], self.lengths)
        mask = np.repeat(kept, self.lengths) & (within < np.repeat(train_end, self.lengths))
        return np.bincount(self.items[mask], minlength=num_items)


@dataclass
class Batch:
    src: torch.Tensor  # (B, H * D) history tokens, PAD-left-padded
    tgt_in: torch.Tensor  # (B, D) decoder input [BOS, t_1 .. t_{D-1}]
    tgt_codes: torch.Tensor  # (B, D) target local codes


def encoder_tokens(catalog: SidCatalog, histories: np.ndarray) -> torch.Tensor:
    """(B, H) item indices (-1 pad) -> (B, H * D) token ids."""
    tokens = catalog.item_tokens(histories)  # (B, H, D)
    return torch.from_numpy(tokens.reshape(len(histories), -1))


def make_batch(catalog: SidCatalog, histories: np.ndarray, targets: np.ndarray) -> Batch:
    tgt_tokens = torch.from_numpy(catalog.item_tokens(targets))  # (B, D)
    return Batch(encoder_tokens(catalog, histories), decoder_inputs(tgt_tokens),
                 torch.from_numpy(catalog.codes[targets]))


def shard_bounds(example_counts: np.ndarray, world: int) -> np.ndarray:
    """(world + 1,) user boundaries splitting users into contiguous ranges of ~equal example count."""
    cum = np.cumsum(example_counts)
    total = int(cum[-1]) if len(cum) else 0
    cuts = np.searchsorted(cum, np.arange(1, world) * total / world, side="left") + 1
    return np.concatenate([[0], np.minimum(cuts, len(cum)), [len(cum)]]).astype(np.int64)


def load_shard(loc: Location, cfg: DataConfig, rank: int, world: int) -> UserSequences:
    """This rank's users of the sequence table at ``loc`` (reads only the files it needs)."""
    files = parquet_files(loc)
    rows = np.array([file_rows(f) for f in files], dtype=np.int64)
    lengths = read_table(loc, columns=["length"]).column("length").to_numpy()
    lo, hi = shard_bounds(count_examples(lengths, cfg, "train"), world)[rank:rank + 2]
    file_start = np.concatenate([[0], np.cumsum(rows)])
    parts = []
    for i, f in enumerate(files):
        a, b = max(lo, file_start[i]), min(hi, file_start[i + 1])
        if a < b:
            table = read_table(f, columns=["user_id", "items"])
            parts.append(table.slice(a - file_start[i], b - a))
    if not parts:
        empty = pa.table({"user_id": pa.array([], pa.int64()), "items": pa.array([], pa.list_(pa.int32()))})
        return UserSequences.from_table(empty)
    return UserSequences.from_table(pa.concat_tables(parts))


def epoch_order(num_examples: int, seed: int, epoch: int, rank: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, rank]).permutation(num_examples)


def train_batches(seqs: UserSequences, catalog: SidCatalog, cfg: DataConfig, batch_size: int, num_steps: int,
                  seed: int, epoch: int, rank: int, start_step: int = 0) -> Iterator[Batch]:
    """``num_steps`` shuffled training batches of this shard (the same on every call)."""
    user, pos = seqs.examples(cfg, "train")
    order = epoch_order(len(user), seed, epoch, rank)
    for step in range(start_step, num_steps):
        pick = order[step * batch_size:(step + 1) * batch_size]
        yield make_batch(catalog, seqs.histories(user[pick], pos[pick], cfg.max_history),
                         seqs.targets(user[pick], pos[pick]))
