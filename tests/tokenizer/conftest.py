"""Fixtures of the tokenizer tests: a small synthetic catalog as a tokenizer batch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from simcit_dist.data.schemas import PARTNER_ID
from simcit_dist.inputs.synthetic import SyntheticConfig, build_tree, item_chunk, leaf_of, pair_chunk
from simcit_dist.tokenizer.inputs import arrow_to_batch, partner_column

MODALITIES = {"emb_cf": 16, "emb_image": 48, "emb_text": 32}


@dataclass
class Catalog:
    cfg: SyntheticConfig
    batch: dict[str, torch.Tensor]  # every item: item_id + one (N, d_m) tensor per modality
    embeddings: np.ndarray  # (N, sum d_m) modalities concatenated in sorted column order
    leaves: np.ndarray  # (N,) ground-truth leaf cluster
    partner: np.ndarray  # (N,) index of one co-occurring item, -1 when the item has none

    @property
    def dims(self) -> dict[str, int]:
        return dict(self.cfg.modalities)

    def rows(self, index: torch.Tensor, with_partner: bool = False) -> dict[str, torch.Tensor]:
        """A batch of the given item indices, optionally carrying each one's partner."""
        out = {k: v[index] for k, v in self.batch.items()}
        if with_partner:
            p = torch.from_numpy(self.partner)[index]
            safe = p.clamp_min(0)
            for m in self.cfg.modalities:
                rows = self.batch[m][safe].clone()
                rows[p < 0] = float("nan")
                out[partner_column(m)] = rows
            out[PARTNER_ID] = torch.where(p >= 0, self.batch["item_id"][safe], torch.full_like(p, -1))
        return out


def make_catalog(num_items: int) -> Catalog:
    cfg = SyntheticConfig(num_items=num_items, chunk_items=num_items, modalities=dict(MODALITIES), seed=3)
    tree = build_tree(cfg)
    batch = arrow_to_batch(item_chunk(cfg, tree, 0), list(cfg.modalities))
    batch = {k: v.clone() for k, v in batch.items()}  # writable tensors
    emb = np.concatenate([batch[m].numpy() for m in sorted(cfg.modalities)], axis=1)
    pairs = pair_chunk(cfg, tree, 0)
    partner = np.full(num_items, -1, dtype=np.int64)
    a = pairs.column("item_a").to_numpy() - cfg.item_id_offset
    b = pairs.column("item_b").to_numpy() - cfg.item_id_offset
    partner[a] = b  # the last pair of each item wins; one partner per item is enough here
    return Catalog(cfg, batch, emb, leaf_of(cfg, tree, np.arange(num_items)), partner)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return make_catalog(1024)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: these tensors are small, and on a busy shared machine spinning
    OpenMP threads cost far more than they give. Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
