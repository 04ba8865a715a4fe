"""Training-curve plots: written for a full history, and without warnings for an entry that has
none (RQ-KMeans in a comparison has no loss or perplexity curve)."""

from __future__ import annotations

import warnings

from simcit_dist.report.plots import training_curves


def test_training_curves_with_and_without_recorded_series(tmp_path) -> None:
    full = [{"step": s, "loss": 5.0 - s, "loss_view0": 4.0 - s, "perplexity_l0": 10.0 + s, "temperature": 1.0 / (s + 1),
             "lr": 1e-3} for s in range(4)]
    empty = [{"step": s} for s in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty legend used to warn here
        for name, history in (("full", full), ("empty", empty)):
            path = training_curves(history, str(tmp_path / f"{name}.png"))
            with open(path, "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n"
