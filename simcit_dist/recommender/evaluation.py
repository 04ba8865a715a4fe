"""Item-level evaluation: histories -> ranked items -> Recall/NDCG, locally or on Ray.

A :class:`Ranker` turns histories into ranked item indices: :class:`BeamRanker` for the SID model
(beam search -> decoded SIDs -> items, through :class:`Recommender`, a model with its catalog and
trie), SASRec's full-catalog ranker for the ID baseline. :func:`score_examples` scores one shard
in-process (training workers use it for per-epoch validation and all-reduce the sums);
:func:`evaluate_ranker` scores whole splits with a pool of Ray Data actors, each loading its
ranker once (:func:`evaluate_model` for the SID model). Every result also carries the most-popular baseline on the same examples
(``popular/recall@K``...), so a report always shows the margin over it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import torch

from simcit_dist.cpu_claims import pool_cpus
from simcit_dist.data.parquet_io import parquet_files, read_dataset, read_table
from simcit_dist.recommender.beam import beam_search
from simcit_dist.recommender.catalog import SidCatalog, load_catalog
from simcit_dist.recommender.config import DataConfig, EvalConfig
from simcit_dist.recommender.examples import UserSequences, encoder_tokens
from simcit_dist.recommender.export import load_meta, load_model
from simcit_dist.recommender.metrics import finalize, metric_sums, popularity_ranking, target_ranks
from simcit_dist.recommender.trie import SidTrie
from simcit_dist.storage import Location, StorageConfig, resolve

log = logging.getLogger(__name__)

SPLITS = ("valid", "test")
USERS_PER_BATCH = 1024  # users per Ray Data batch handed to an evaluation actor


class Recommender:
    """A model plus the catalog it decodes into: histories in, ranked item indices out."""

    def __init__(self, model: Any, catalog: SidCatalog, device: str | torch.device = "cpu") -> None:
        if model.layout != catalog.layout:
            raise ValueError(f"model was trained on SID positions {model.layout.level_sizes}, the table has "
                             f"{catalog.layout.level_sizes}")
        self.model, self.catalog, self.device = model, catalog, torch.device(device)
        self.trie = SidTrie(catalog.unique_codes, catalog.layout.level_sizes).to(self.device)

    @torch.no_grad()
    def recommend(self, histories: np.ndarray, k: int, beam_size: int, constrained: bool = True,
                  batch_size: int = 64) -> np.ndarray:
        """(E, H) item indices (-1 pad) -> (E, k) recommended item indices (-1 pad), best first."""
        out = np.full((len(histories), k), -1, dtype=np.int64)
        for lo in range(0, len(histories), batch_size):
            src = encoder_tokens(self.catalog, histories[lo:lo + batch_size]).to(self.device)
            result = beam_search(self.model, src, beam_size, self.trie, constrained=constrained)
            keys = self.catalog.layout.keys(result.codes.cpu().numpy())
            out[lo:lo + batch_size] = self.catalog.items_of_keys(keys, result.valid.cpu().numpy(), k)
        return out


class Ranker(Protocol):
    def rank(self, histories: np.ndarray, k: int) -> np.ndarray:
        """(E, H) item indices (-1 left padding, most recent last) -> (E, k) item indices, best first."""
        ...


class BeamRanker:
    """The SID model as a :class:`Ranker`: (constrained) beam search with ``cfg``'s settings."""

    def __init__(self, rec: Recommender, cfg: EvalConfig) -> None:
        self.rec, self.cfg = rec, cfg

    def rank(self, histories: np.ndarray, k: int) -> np.ndarray:
        return self.rec.recommend(histories, k, self.cfg.beam_size, self.cfg.constrained, self.cfg.batch_size)


def score_examples(ranker: Ranker, seqs: UserSequences, data: DataConfig, split: str, cfg: EvalConfig,
                   popular: np.ndarray | None = None, limit: int | None = None) -> dict[str, float]:
    """Metric sums (not means) over the ``split`` targets of ``seqs``; ``limit`` takes a fixed random subset."""
    user, pos = seqs.examples(data, split)
    if limit is not None and len(user) > limit:
        pick = np.sort(np.random.default_rng(0).choice(len(user), size=limit, replace=False))
        user, pos = user[pick], pos[pick]
    targets = seqs.targets(user, pos)
    ranked = ranker.rank(seqs.histories(user, pos, data.max_history), max(cfg.ks))
    sums = metric_sums(target_ranks(ranked, targets), cfg.ks)
    if popular is not None:
        top = np.broadcast_to(popular[:max(cfg.ks)], (len(targets), min(len(popular), max(cfg.ks))))
        sums.update({f"popular/{k}": v for k, v in metric_sums(target_ranks(top, targets), cfg.ks).items()
                     if k != "count"})
    return sums


def popular_items(sequences: Location, data: DataConfig, num_items: int, k: int) -> np.ndarray:
    """The ``k`` most frequent items of the training parts of all sequences (one file at a time)."""
    counts = np.zeros(num_items, dtype=np.int64)
    for f in parquet_files(sequences):
        counts += UserSequences.from_table(read_table(f, columns=["user_id", "items"])).train_item_counts(
            data, num_items)
    return popularity_ranking(counts, k)


def load_beam_ranker(model_uri: str, storage: StorageConfig | None, sid_root: str, sid_version: str,
                     cfg: EvalConfig) -> BeamRanker:
    """An exported SID model as a :class:`BeamRanker` (in an evaluation actor: CPU or its GPU)."""
    device = "cuda" if cfg.use_gpu and torch.cuda.is_available() else "cpu"
    model, _ = load_model(model_uri, storage)
    return BeamRanker(Recommender(model.to(device), load_catalog(sid_root, storage, sid_version), device), cfg)


class _EvalWorker:
    """Ray Data actor: builds its ranker once (``load()``), scores batches of users."""

    def __init__(self, load: Callable[[], Ranker], data: DataConfig, cfg: EvalConfig, splits: Sequence[str],
                 popular: np.ndarray) -> None:
        torch.set_num_threads(cfg.cpus_per_worker)
        self.ranker = load()
        self.data, self.cfg, self.splits, self.popular = data, cfg, list(splits), popular

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        seqs = UserSequences.from_table(batch)
        rows: dict[str, list[np.ndarray]] = {"split": [], "rank": [], "popular_rank": []}
        k = max(self.cfg.ks)
        for code, split in enumerate(SPLITS):
            if split not in self.splits:
                continue
            user, pos = seqs.examples(self.data, split)
            targets = seqs.targets(user, pos)
            ranked = self.ranker.rank(seqs.histories(user, pos, self.data.max_history), k)
            top = np.broadcast_to(self.popular[:k], (len(targets), min(len(self.popular), k)))
            rows["split"].append(np.full(len(targets), code, dtype=np.int8))
            rows["rank"].append(target_ranks(ranked, targets))
            rows["popular_rank"].append(target_ranks(top, targets))
        return {name: np.concatenate(parts) if parts else np.zeros(0, np.int64) for name, parts in rows.items()}


def evaluate_model(model_uri: str, sequences: Location, sid_root: str, cfg: EvalConfig,
                   storage: StorageConfig | None = None, splits: Sequence[str] = SPLITS,
                   data: DataConfig | None = None, sid_version: str | None = None) -> dict[str, dict[str, float]]:
    """Recall/NDCG@K of a trained SID model on each split, scored by ``cfg.num_workers`` Ray actors.

    ``data``/``sid_version`` default to what the model was trained with.
    """
    # Absolute before anything reaches the scoring actors (a relative path is relative to the driver).
    model_uri, sid_root = resolve(model_uri, storage).uri, resolve(sid_root, storage).uri
    meta = load_meta(model_uri, storage)
    data = data or meta.data
    version = sid_version or meta.sid_version
    if version != meta.sid_version:
        log.warning("evaluating on SID version %s; the model was trained on %s", version, meta.sid_version)
    num_items = load_catalog(sid_root, storage, version).num_items
    load = functools.partial(load_beam_ranker, model_uri, storage, sid_root, version, cfg)
    out = evaluate_ranker(load, sequences, data, cfg, num_items, splits)
    log.info("evaluated %s: %s", model_uri, out)
    return out


def evaluate_ranker(load: Callable[[], Ranker], sequences: Location, data: DataConfig, cfg: EvalConfig,
                    num_items: int, splits: Sequence[str] = SPLITS) -> dict[str, dict[str, float]]:
    """Recall/NDCG@K (and the most-popular baseline's) on each split of the sequence table, scored by
    ``cfg.num_workers`` Ray Data actors that each call ``load()`` once (it must pickle)."""
    import ray.data

    start = time.time()
    popular = popular_items(sequences, data, num_items, max(cfg.ks))
    ds = read_dataset(sequences, columns=["user_id", "items"])
    if cfg.max_users is not None:
        ds = ds.limit(cfg.max_users)
    scored = ds.map_batches(
        _EvalWorker, batch_size=USERS_PER_BATCH, batch_format="pyarrow",
        fn_constructor_kwargs={"load": load, "data": data, "cfg": cfg, "splits": list(splits), "popular": popular},
        compute=ray.data.ActorPoolStrategy(size=cfg.num_workers),
        num_cpus=pool_cpus(cfg.cpus_per_worker, cfg.num_workers, "evaluation actors"),
        num_gpus=1 if cfg.use_gpu else 0)
    parts = list(scored.iter_batches(batch_size=None, batch_format="numpy"))
    columns = {name: np.concatenate([p[name] for p in parts]) if parts else np.zeros(0, np.int64)
               for name in ("split", "rank", "popular_rank")}
    out = {}
    for code, split in enumerate(SPLITS):
        if split in splits:
            sel = columns["split"] == code
            out[split] = metrics_with_baseline(columns["rank"][sel], columns["popular_rank"][sel], cfg.ks)
    log.info("scored %s in %.1fs", sequences.uri, time.time() - start)
    return out


def metrics_with_baseline(ranks: np.ndarray, popular_ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    sums = metric_sums(ranks, ks)
    sums.update({f"popular/{k}": v for k, v in metric_sums(popular_ranks, ks).items() if k != "count"})
    return finalize(sums)
