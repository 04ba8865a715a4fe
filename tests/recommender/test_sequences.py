from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from simcit_dist.config_loader import ConfigError, load_config
from simcit_dist.recommender.catalog import SidCatalog, SidLayout
from simcit_dist.recommender.config import (
    DataConfig,
    EvalConfig,
    RecommenderTrainConfig,
    TrainRecommenderJobConfig,
)
from simcit_dist.recommender.examples import UserSequences, make_batch, shard_bounds
from simcit_dist.recommender.sequences import count_examples, group_user_sequences, split_bounds


def interactions(rows: list[tuple[int, int, int]]) -> pa.Table:
    user, item, ts = zip(*rows)
    return pa.table({"user_id": pa.array(user, pa.int64()), "item_id": pa.array(item, pa.int64()),
                     "timestamp": pa.array(ts, pa.int64())})


def test_group_sorts_by_time_and_reports_items_without_sids() -> None:
    catalog_ids = np.array([100, 101, 102, 103])  # item index = position
    block = interactions([(7, 102, 30), (7, 100, 10), (7, 999, 20), (5, 101, 5), (7, 103, 30), (5, 998, 1)])
    out = group_user_sequences(block, catalog_ids).to_pylist()
    by_user = {row["user_id"]: row for row in out}
    assert by_user[7]["items"] == [0, 2, 3]  # t=10, then the t=30 tie broken by item id (102 < 103)
    assert by_user[7]["num_missing"] == 1 and by_user[7]["missing_items"] == [999]
    assert by_user[5]["items"] == [1] and by_user[5]["length"] == 1 and by_user[5]["missing_items"] == [998]


def test_leave_one_out_and_chrono_bounds() -> None:
    loo = DataConfig(split="leave_one_out")
    train_end, valid_end = split_bounds(np.array([3, 5, 10]), loo)
    assert train_end.tolist() == [1, 3, 8] and valid_end.tolist() == [2, 4, 9]
    chrono = DataConfig(split="chrono")
    train_end, valid_end = split_bounds(np.array([10, 20, 15]), chrono)
    assert train_end.tolist() == [8, 16, 12] and valid_end.tolist() == [9, 18, 13]
    # Users below the threshold (10 for chrono by default) give no examples at all.
    lengths = np.array([9, 10, 20])
    assert count_examples(lengths, chrono, "train").tolist() == [0, 7, 15]
    assert count_examples(lengths, chrono, "valid").tolist() == [0, 1, 2]
    assert count_examples(lengths, chrono, "test").tolist() == [0, 1, 2]
    assert count_examples(np.array([2, 3, 4]), loo, "train").tolist() == [0, 0, 1]
    assert count_examples(np.array([2, 3, 4]), loo, "test").tolist() == [0, 1, 1]


def test_examples_histories_and_batches() -> None:
    table = pa.table({"user_id": pa.array([1, 2], pa.int64()),
                      "items": pa.array([[0, 1, 2, 3, 4], [4, 3, 2]], pa.list_(pa.int32()))})
    seqs = UserSequences.from_table(table)
    cfg = DataConfig(split="leave_one_out", max_history=2)
    user, pos = seqs.examples(cfg, "train")
    assert list(zip(user.tolist(), pos.tolist())) == [(0, 1), (0, 2)]
    assert seqs.histories(user, pos, 2).tolist() == [[-1, 0], [0, 1]]
    user, pos = seqs.examples(cfg, "test")
    assert seqs.targets(user, pos).tolist() == [4, 2]
    assert seqs.histories(user, pos, 3).tolist() == [[1, 2, 3], [-1, 4, 3]]
    # Popularity counts only the training part: user 1 items 0..2, user 2 item 4 (positions < train_end).
    assert seqs.train_item_counts(cfg, 5).tolist() == [1, 1, 1, 0, 1]
    catalog = SidCatalog(SidLayout((5, 1)), np.arange(5), np.stack([np.arange(5), np.zeros(5, int)], 1))
    batch = make_batch(catalog, np.array([[-1, 0]]), np.array([3]))
    assert batch.src.tolist() == [[0, 0, 2, 7]]  # PAD PAD | level-1 code 0 (token 2), suffix 0 (token 7)
    assert batch.tgt_in.tolist() == [[1, 5]] and batch.tgt_codes.tolist() == [[3, 0]]


def test_shards_balance_examples() -> None:
    counts = np.array([10, 1, 1, 1, 10, 1, 1, 1, 10, 2])
    bounds = shard_bounds(counts, 2)
    assert bounds[0] == 0 and bounds[-1] == len(counts)
    halves = [counts[bounds[i]:bounds[i + 1]].sum() for i in range(2)]
    assert abs(halves[0] - halves[1]) <= 10
    assert shard_bounds(counts, 1).tolist() == [0, 10]


@pytest.mark.parametrize(("override", "message"), [
    (["eval.beam_size=10", "eval.ks=[5, 20]"], "eval.beam_size (10) must be >= the largest K"),
    (["data.split=random"], "allowed values: ['leave_one_out', 'chrono']"),
    (["train.deepspeed={zero_optimization: {stage: 4}}"], "stage must be one of [0, 1, 2, 3]"),
    (["train.deepspeed={fp16: {enabled: true}}"], "fp16 needs train.use_gpu=true"),
    (["data.min_interactions=2"], "min_interactions must be >= 3"),
    (["run.name=a/b"], "run.name"),
])
def test_config_validation_messages(override: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(TrainRecommenderJobConfig, None, override)
    assert message in str(exc.value)


def test_deepspeed_config_is_filled_from_training() -> None:
    cfg = RecommenderTrainConfig(batch_size=32, num_workers=1, deepspeed={"zero_optimization": {"stage": 3}, "bf16": {"enabled": True}})
    ds = cfg.deepspeed_config()
    assert ds["train_micro_batch_size_per_gpu"] == 32 and ds["gradient_accumulation_steps"] == 1
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert cfg.precision == "bf16" and cfg.zero_stage == 3
    assert "train_micro_batch_size_per_gpu" not in cfg.deepspeed  # the config itself is not mutated
    assert EvalConfig().beam_size == 50
