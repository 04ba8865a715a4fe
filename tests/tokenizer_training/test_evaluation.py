"""The end-of-training collapse check on held-back SID metrics."""

from __future__ import annotations

from simcit_dist.tokenizer_training.evaluation import collapse_warnings


def test_collapsed_levels_are_named_and_healthy_ones_are_not() -> None:
    random = {"perplexity_l0": 240.0, "perplexity_l1": 240.0, "perplexity_l2": 240.0, "gini": 0.1}
    # The full-size e2e bench's collapse (per-level perplexity ~2.5 of K=256) at levels 0 and 2.
    ours = {"perplexity_l0": 2.5, "perplexity_l1": 120.0, "perplexity_l2": 23.9, "gini": 0.9}
    warnings = collapse_warnings(ours, random)
    assert len(warnings) == 2
    assert warnings[0].startswith("codebook collapse at level 0: held-back perplexity 2.5 vs 240")
    assert warnings[1].startswith("codebook collapse at level 2:")
    assert "simcit.commitment_weight=0.25" in warnings[0]
    assert collapse_warnings({**ours, "perplexity_l0": 24.0, "perplexity_l2": 24.0}, random) == []
    assert collapse_warnings({}, random) == []  # no held-back metrics: nothing to say
