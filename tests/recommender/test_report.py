from __future__ import annotations

from simcit_dist.recommender.report import write_run_report
from simcit_dist.storage import read_bytes, resolve


def test_report_has_data_metrics_and_curves(tmp_path) -> None:
    metrics = {"count": 10.0, "recall@10": 0.5, "ndcg@10": 0.25, "popular/recall@10": 0.1}
    report = {
        "run": {"name": "demo"}, "sid_root": "s3://b/sids", "sid_version": "v1", "interactions": "s3://b/i",
        "data": {"interactions": 120, "interactions_missing_sid": 3, "missing_item_sample": [7, 9], "users": 12,
                 "users_kept": 10, "examples": {"train": 80, "valid": 10, "test": 10}},
        "history": [{"epoch": 1, "global_step": 5, "train_loss": 1.2, "valid/recall@10": 0.3, "seconds": 1.0},
                    {"epoch": 2, "global_step": 10, "train_loss": 1.0, "valid/recall@10": 0.4, "seconds": 1.0}],
        "valid": metrics, "test": metrics,
    }
    out = resolve(str(tmp_path))
    text = write_run_report(report, out, [10], 10)
    assert "| interactions without SID (excluded) | 3 |" in text
    assert "| test | 10 | 0.5 | 0.25 | 0.1 |" in text
    assert "| 2 | 10 | 1 | 0.4 | 1 |" in text
    assert (tmp_path / "report.md").read_text() == text
    for png in ("training_loss.png", "valid_recall.png"):
        assert read_bytes(out.child(png))[:4] == b"\x89PNG"
