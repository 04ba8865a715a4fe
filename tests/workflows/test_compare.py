"""jobs/compare_tokenizers.py end to end on local Ray: a tokenizer trained here (RQ-KMeans) and an
external LETTER-style SID table (the synthetic catalog's ground-truth cluster codes) through the
same recommender, one table + plot; a re-run reuses every finished stage; with ``seeds`` one run
per seed and a mean ± std table."""

from __future__ import annotations

import json
import math
import shlex
import sys
from pathlib import Path

import pytest

from simcit_dist.data.parquet_io import write_table
from simcit_dist.inputs.synthetic import build_tree, item_chunk, user_chunk
from simcit_dist.storage import resolve
from simcit_dist.workflows.compare import SASREC_ROW, with_seed
from simcit_dist.workflows.config import CompareJobConfig
from tests.jobs_registry import REPO, load_job_module
from tests.recommender.helpers import leaf_sid_codes, small_synthetic
from tests.recommender.test_jobs import SMALL


def _write_inputs(root: Path) -> Path:
    """Catalog + interactions of the small synthetic world, and its ground-truth SIDs as a LETTER index."""
    cfg = small_synthetic(num_users=400)
    tree = build_tree(cfg)
    for c in range(cfg.num_item_chunks):
        write_table(item_chunk(cfg, tree, c), resolve(str(root / "catalog" / f"part-{c:05d}.parquet")))
    for c in range(cfg.num_user_chunks):
        write_table(user_chunk(cfg, tree, c), resolve(str(root / "interactions" / f"part-{c:05d}.parquet")))
    ids, codes, suffix = leaf_sid_codes(cfg)
    index = {str(i): [f"<{chr(ord('a') + level)}_{int(c)}>" for level, c in enumerate([*row, s])]
             for i, row, s in zip(ids, codes, suffix)}
    path = root / "truth.index.json"
    path.write_text(json.dumps(index))
    return path


def _compare_argv(tmp_path: Path, monkeypatch, entries: str) -> None:
    """Inputs + a compare config (the ground-truth table as external entry ``truth``, plus ``entries``)
    and the job's argv with a one-epoch, one-worker small recommender."""
    index = _write_inputs(tmp_path)
    config = tmp_path / "compare.yaml"
    config.write_text(f"""
title: "tiny synthetic"
catalog: {tmp_path}/catalog
pairs: null
interactions: {tmp_path}/interactions
output: {tmp_path}/out
external:
  truth: {index}
{entries}
""")
    recommender = [f"recommender.{o}" for o in SMALL if not o.startswith(("train.epochs", "train.batch_size"))]
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["compare", "--config", str(config), *recommender,
                                      "recommender.train.epochs=1", "recommender.train.num_workers=1",
                                      "recommender.train.batch_size=32"])


@pytest.mark.slow
def test_compare_job_tokenizer_and_external_table(tmp_path: Path, ray_local, monkeypatch) -> None:
    _compare_argv(tmp_path, monkeypatch, """tokenizers:
  rqkmeans: {kind: rqkmeans, rqkmeans: {num_levels: 2, codebook_size: 8, iters: 5}}
assign: {num_partitions: 2, actors: 1, encode_batch_size: 64, hit_rate_sample: 50}
sasrec:
  max_history: 8
  model: {hidden_dim: 16, num_layers: 1, num_heads: 2, ffn_dim: 32, dropout: 0.1}
  train: {epochs: 2, batch_size: 32, num_workers: 1, lr: 0.005, patience: 0}""")
    load_job_module("jobs/compare_tokenizers.py").main()

    out = tmp_path / "out"
    rows = json.loads((out / "comparison.json").read_text())
    assert [(r["tokenizer"], r["kind"]) for r in rows] == [("rqkmeans", "rqkmeans"), ("truth", "external"),
                                                          (SASREC_ROW, "baseline"), ("most popular", "baseline")]
    for row in rows:
        assert all(0.0 <= row[f"{m}@{k}"] <= 1.0 for m in ("Recall", "NDCG") for k in (5, 10, 20)), row
        assert row["Recall@5"] <= row["Recall@10"] <= row["Recall@20"]
    rq, truth, sasrec, popular = rows
    assert rq["test users"] == truth["test users"] == sasrec["test users"] == 400  # the same split
    sasrec_metrics = json.loads((out / "sasrec" / "metrics.json").read_text())
    assert sasrec["Recall@10"] == sasrec_metrics["test"]["recall@10"]
    # every row carries the validation Recall@10 (what choices are made on) and the command that made it
    assert sasrec["valid Recall@10"] == sasrec_metrics["valid"]["recall@10"]
    rq_metrics = json.loads((out / "rqkmeans" / "recommender" / "metrics.json").read_text())
    assert rq["valid Recall@10"] == rq_metrics["valid"]["recall@10"]
    assert popular["valid Recall@10"] == rq_metrics["valid"]["popular/recall@10"]
    assert {r["command"] for r in rows} == {shlex.join(["python", *sys.argv])} and "--config" in rows[0]["command"]
    assert sasrec_metrics["config"]["data"]["max_history"] == 8 and len(sasrec_metrics["history"]) == 2
    assert truth["collision"] == 0.0 and truth["max suffix"] == 0  # the suffix token made every SID unique
    assert math.isfinite(rq["Gini"]) and rq["perplexity (mean/level)"] > 1.0
    assert popular["Recall@10"] > 0
    text = (out / "comparison.md").read_text()
    assert text.startswith("## tiny synthetic") and "| truth | external |" in text and "comparison.png" in text
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    versions = {name: (out / name / "sids" / "LATEST").read_text().strip() for name in ("rqkmeans", "truth")}
    assert all((out / "ray" / f"recommender-{name}-{v}").is_dir() for name, v in versions.items())

    # The same command again: the tokenizer fit, the SID versions, both recommender runs and SASRec are reused.
    load_job_module("jobs/compare_tokenizers.py").main()
    assert json.loads((out / "comparison.json").read_text()) == rows
    assert {name: (out / name / "sids" / "LATEST").read_text().strip() for name in versions} == versions


def test_with_seed_sets_every_seed_and_its_own_output() -> None:
    cfg = CompareJobConfig(output="runs/compare/x", seeds=[3, 7], title="T")
    seeded = with_seed(cfg, 7)
    assert seeded.output == "runs/compare/x/seed-7" and seeded.title == "T (seed 7)" and seeded.seeds == []
    assert seeded.data.seed == 7 and seeded.recommender.train.seed == 7
    for tok in seeded.tokenizers.values():
        assert (tok.simcit.seed, tok.rqvae.seed, tok.rqkmeans.seed) == (7, 7, 7)
    assert cfg.data.seed == 0 and cfg.recommender.train.seed == 0  # the original is untouched
    assert all(t.simcit.seed == 0 for t in cfg.tokenizers.values())
    with pytest.raises(ValueError, match="seeds must be distinct"):
        CompareJobConfig(seeds=[1, 1])


@pytest.mark.slow
def test_compare_job_over_seeds(tmp_path: Path, ray_local, monkeypatch) -> None:
    _compare_argv(tmp_path, monkeypatch, "tokenizers: {}\nseeds: [0, 5]\nsasrec: {enabled: false}")
    load_job_module("jobs/compare_tokenizers.py").main()

    out = tmp_path / "out"
    per_seed = {s: json.loads((out / f"seed-{s}" / "comparison.json").read_text()) for s in (0, 5)}
    trained_seeds = {s: json.loads((out / f"seed-{s}" / "truth" / "recommender" / "metrics.json").read_text())
                     ["config"]["train"]["seed"] for s in (0, 5)}
    assert trained_seeds == {0: 0, 5: 5}
    truth, popular = json.loads((out / "comparison.json").read_text())
    assert (truth["tokenizer"], truth["seeds"], popular["tokenizer"]) == ("truth", 2, "most popular")
    recalls = [per_seed[s][0]["Recall@10"] for s in (0, 5)]
    assert truth["Recall@10"] == pytest.approx(sum(recalls) / 2)
    assert truth["Recall@10 std"] == pytest.approx(abs(recalls[0] - recalls[1]) / math.sqrt(2))
    assert popular["Recall@10 std"] == 0.0  # the same split for every seed
    assert truth["command"] == per_seed[0][0]["command"] == shlex.join(["python", *sys.argv])
    assert math.isfinite(truth["valid Recall@10"])
    text = (out / "comparison.md").read_text()
    assert text.startswith("## tiny synthetic: mean ± std over seeds 0, 5") and "| truth | external | 2 |" in text
    assert "| tokenizer | seed 0 | seed 5 |" in text and (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
