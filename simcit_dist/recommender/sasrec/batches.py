"""SASRec's training windows and evaluation inputs, from a worker's :class:`UserSequences`.

Training follows RecBole's per-prefix examples at the cost of one forward per *sequence*: a
window is a left-aligned run of up to ``L = data.max_history`` items whose every position predicts
the next item, and under the causal mask position ``t`` sees exactly the prefix a per-example
model would. A user's training targets (positions ``[1, train_end)``) are tiled by windows from the
most recent backwards, so every target is predicted once per epoch; the first targets of an older
window of a user with more than ``L`` training targets see only the items of that window.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from simcit_dist.recommender.config import DataConfig
from simcit_dist.recommender.examples import UserSequences, epoch_order
from simcit_dist.recommender.sequences import target_ranges


@dataclass
class Windows:
    """Training windows of a shard: user, and the half-open target range ``[first, end)`` each."""

    user: np.ndarray  # (W,) user row in the shard
    first: np.ndarray  # (W,) first target position
    end: np.ndarray  # (W,) one past the last target position


@dataclass
class SasrecBatch:
    items: torch.Tensor  # (B, T) item tokens (index + 1), left-aligned, 0 = padding
    targets: torch.Tensor  # (B, T) next item index at each position, -1 = no loss


def training_windows(seqs: UserSequences, data: DataConfig) -> Windows:
    """Tile every user's training targets with windows of at most ``data.max_history`` targets."""
    length = data.max_history
    lo, hi = target_ranges(seqs.lengths, data, "train")
    count = hi - lo  # training targets per user
    per_user = -(-count // length)
    user = np.repeat(np.arange(len(count)), per_user)
    back = np.arange(int(per_user.sum())) - np.repeat(np.cumsum(per_user) - per_user, per_user)  # 0 = most recent
    end = hi[user] - back * length
    return Windows(user, np.maximum(lo[user], end - length), end)


def window_batch(seqs: UserSequences, windows: Windows, pick: np.ndarray) -> SasrecBatch:
    """The windows ``pick`` as a batch: inputs ``items[first-1 .. end-2]``, targets ``items[first .. end-1]``,
    padded to the longest window of the batch."""
    first, end = windows.first[pick], windows.end[pick]
    n = end - first  # (B,) targets = inputs per window
    width = int(n.max()) if len(n) else 1
    start = seqs.offsets[windows.user[pick]] + first - 1  # (B,) flat index of the first input item
    index = start[:, None] + np.arange(width)  # (B, T)
    real = np.arange(width) < n[:, None]
    safe = np.where(real, index, 0)
    items = np.where(real, seqs.items[safe] + 1, 0)
    targets = np.where(real, seqs.items[np.where(real, index + 1, 0)], -1)
    return SasrecBatch(torch.from_numpy(items), torch.from_numpy(targets))


def sasrec_train_batches(seqs: UserSequences, windows: Windows, batch_size: int, num_steps: int, seed: int,
                         epoch: int, rank: int) -> Iterator[SasrecBatch]:
    """``num_steps`` shuffled batches of windows (the order a pure function of seed, epoch, rank)."""
    order = epoch_order(len(windows.user), seed, epoch, rank)
    for step in range(num_steps):
        yield window_batch(seqs, windows, order[step * batch_size:(step + 1) * batch_size])


def left_align(histories: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(E, H) item indices, -1 *left* padding (most recent last) -> (E, T) tokens left-aligned with
    0 padding, T = the longest history, and (E,) lengths."""
    lengths = (histories >= 0).sum(axis=1)
    width = max(int(lengths.max()) if len(lengths) else 1, 1)
    h = histories.shape[1]
    column = (h - lengths)[:, None] + np.arange(width)  # where position t's item sits in the row
    real = np.arange(width) < lengths[:, None]
    items = np.where(real, histories[np.arange(len(histories))[:, None], np.minimum(column, h - 1)] + 1, 0)
    return items, lengths
