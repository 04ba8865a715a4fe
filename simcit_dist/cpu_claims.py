"""Fit a pool's CPU claim to a fixed-size local Ray, so a small machine runs slower, never stalls.

Ray schedules by logical CPUs. A pool that claims every CPU of the cluster (Ray Train's worker
group, an actor pool of ``map_batches``) leaves none for the Ray Data tasks that feed it, and the
job waits forever. A job that starts its own Ray (``jobs/_common.py``) claims the machine's real
CPU count and marks it with :data:`LOCAL_RAY_ENV`: on such a fixed-size cluster a pool asking for
more than the CPUs it can have without starving its feeders gets a smaller *logical* claim per
unit (a fraction of a CPU, which Ray allows); its processes still run the threads they were
configured with, so the cores are shared, as they would be anyway. On a real cluster (no marker:
``ray job submit``, KubeRay, an autoscaler that adds nodes on demand) claims are never changed.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

LOCAL_RAY_ENV = "SIMCIT_LOCAL_RAY"  # set by a job that started its own fixed-size Ray
MIN_CLAIM = 0.05  # Ray accepts fractional CPUs; below this a pool would crowd out everything else


def fitted_claim(per_unit: float, units: int, total_cpus: float, keep_free: float) -> float:
    """The CPU claim per unit so that ``units`` of them leave ``keep_free`` of ``total_cpus``.

    Unchanged when they fit; otherwise the units share what is left (at least half the cluster:
    on 1 CPU, 2 units get 0.25 each and the feeders 0.5)."""
    if units < 1 or per_unit <= 0 or per_unit * units <= total_cpus - keep_free:
        return per_unit
    room = max(total_cpus - keep_free, total_cpus / 2)
    return max(MIN_CLAIM, min(per_unit, room / units))


def pool_cpus(per_unit: float, units: int, what: str, keep_free: float = 1.0) -> float:
    """:func:`fitted_claim` against the running Ray, on a job's own local Ray only (else ``per_unit``)."""
    if not os.environ.get(LOCAL_RAY_ENV):
        return per_unit
    import ray

    total = float(ray.cluster_resources().get("CPU", 0.0))
    claim = fitted_claim(per_unit, units, total, keep_free)
    if claim != per_unit:
        log.info("%s: %d x %g CPU would leave this %g-CPU local Ray less than %g CPU for the tasks that feed "
                 "it; each claims %.3g CPU instead (same threads, shared cores)", what, units, per_unit, total,
                 keep_free, claim)
    return claim
