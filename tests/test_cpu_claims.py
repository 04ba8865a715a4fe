"""Pools fit their CPU claims to a job's own small local Ray, and leave a real cluster's alone."""

from __future__ import annotations

import pytest

from simcit_dist import cpu_claims
from simcit_dist.cpu_claims import fitted_claim, pool_cpus


@pytest.mark.parametrize(("per_unit", "units", "total", "keep_free", "expected"), [
    (1.0, 2, 8.0, 1.0, 1.0),    # fits: unchanged
    (1.0, 2, 3.0, 1.0, 1.0),    # exactly fits
    (1.0, 2, 2.0, 1.0, 0.5),    # 2 workers on 2 CPUs: 0.5 each, 1 left for the readers
    (1.0, 2, 1.0, 1.0, 0.25),   # 1 CPU: the pool takes half, the readers the other half
    (2.0, 2, 4.0, 1.0, 1.5),    # 2 x 2 CPUs on 4: 1.5 each
    (1.0, 2, 2.0, 0.0, 1.0),    # nothing to keep free (the recommender's workers read their own shards)
    (1.0, 100, 2.0, 1.0, cpu_claims.MIN_CLAIM),
])
def test_fitted_claim(per_unit: float, units: int, total: float, keep_free: float, expected: float) -> None:
    got = fitted_claim(per_unit, units, total, keep_free)
    assert got == pytest.approx(expected)
    if got != per_unit:
        assert units * got <= max(total - keep_free, total / 2) + 1e-9 or got == cpu_claims.MIN_CLAIM


def test_only_a_jobs_own_local_ray_is_fitted(monkeypatch, ray_local) -> None:
    import ray

    total = ray.cluster_resources()["CPU"]
    monkeypatch.delenv(cpu_claims.LOCAL_RAY_ENV, raising=False)
    assert pool_cpus(1.0, int(total), "workers") == 1.0  # a real cluster: never changed
    monkeypatch.setenv(cpu_claims.LOCAL_RAY_ENV, "1")
    assert pool_cpus(1.0, int(total), "workers") == pytest.approx((total - 1) / total)
    assert pool_cpus(1.0, 1, "workers") == 1.0
