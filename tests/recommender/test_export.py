from __future__ import annotations

import pytest
import torch

from simcit_dist.recommender.catalog import SidLayout
from simcit_dist.recommender.config import DataConfig, ModelConfig
from simcit_dist.recommender.export import ModelMeta, load_meta, load_model, save_model
from simcit_dist.recommender.model import TigerModel
from simcit_dist.storage import resolve


def test_exported_model_round_trips_from_a_checkpoint_dir(tmp_path) -> None:
    cfg = ModelConfig(d_model=16, num_heads=2, head_dim=8, ffn_dim=32, num_encoder_layers=1, num_decoder_layers=1)
    layout = SidLayout((4, 4, 2))
    torch.manual_seed(0)
    model = TigerModel(cfg, layout, max_history=3).eval()
    meta = ModelMeta(cfg, DataConfig(split="chrono", max_history=3), layout, "s3://b/sids", "v7")
    save_model(resolve(str(tmp_path / "ckpt" / "model")), model.state_dict(), meta)

    loaded, got = load_model(str(tmp_path / "ckpt"))  # a checkpoint dir holding model/
    assert got == meta and load_meta(str(tmp_path / "ckpt" / "model")) == meta
    src = torch.randint(2, layout.vocab_size, (5, 9))
    tgt = torch.randint(2, 6, (5, 3))
    codes = torch.randint(0, 2, (5, 3))
    assert torch.equal(loaded(src, tgt, codes), model(src, tgt, codes))
    with pytest.raises(FileNotFoundError, match="no trained model"):
        load_model(str(tmp_path))


def test_resume_refuses_a_different_sid_version(tmp_path) -> None:
    import contextlib
    import functools
    import types

    from simcit_dist.recommender.trainer import check_sid_version, restore

    cfg = ModelConfig(d_model=8, num_heads=1, head_dim=8, ffn_dim=8, num_encoder_layers=1, num_decoder_layers=1)
    layout = SidLayout((2, 1))
    meta = ModelMeta(cfg, DataConfig(), layout, "sids", "v1")
    save_model(resolve(str(tmp_path / "model")), TigerModel(cfg, layout, 20).state_dict(), meta)

    class Checkpoint:
        @contextlib.contextmanager
        def as_directory(self):
            yield str(tmp_path)

    with pytest.raises(ValueError, match="trained on SID version 'v1', not 'v2'"):
        restore(None, Checkpoint(), types.SimpleNamespace(check_checkpoint=functools.partial(
            check_sid_version, sid_version="v2")))


def test_worker_job_carries_absolute_uris(tmp_path, monkeypatch) -> None:
    """Relative paths (as in conf/*.yaml) are resolved by the driver: workers run elsewhere."""
    from simcit_dist.recommender.config import RecommenderConfig
    from simcit_dist.recommender.trainer import WorkerJob

    monkeypatch.chdir(tmp_path)
    job = WorkerJob(RecommenderConfig(), "out/data/sequences", "sids", "v1")
    assert job.sequences == str(tmp_path / "out" / "data" / "sequences")
    assert job.sid_root == str(tmp_path / "sids")
    s3 = WorkerJob(RecommenderConfig(), "s3://bucket/seq", "s3://bucket/sids/", "v1")
    assert (s3.sequences, s3.sid_root) == ("s3://bucket/seq", "s3://bucket/sids")
