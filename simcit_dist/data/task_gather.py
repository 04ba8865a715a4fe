"""Results of many Ray tasks in submission order, with a bounded window and a clean stop on failure.

The data jobs fan out one task per file (or per bucket), the SID assignment one per partition.
``gather`` takes the submissions lazily (a generator of ``f.remote(...)``), keeps at most
``max_in_flight`` of them pending, and on the first failed task submits nothing more, waits for the
tasks already running, then re-raises the task's own exception (a ``SchemaError`` naming the file).
``completed`` does the same but yields each result as its task finishes.

Why it never calls ``ray.cancel``: in Ray 2.60 a cancel that races a task finishing aborts the
*driver* (``RAY_CHECK`` "Tried to complete task that was not pending" in ``task_manager.cc``; see
ray-project/ray#54846). Our CI's pytest process died that way, silently, with exit code 1. A bounded
window gives the same fail-fast effect for a catalog of thousands of files (the queued ones are
never submitted), and waiting for the few in flight means none is still writing into a staging
prefix when the caller deletes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import ray


def default_in_flight() -> int:
    """Two tasks per CPU of the cluster: enough queued work to keep every CPU busy."""
    return max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))


def gather(submissions: Iterable[ray.ObjectRef], max_in_flight: int | None = None) -> list[Any]:
    """``ray.get`` of every submission, in order; the first failure is re-raised once nothing runs.

    ``submissions`` is consumed lazily, so pass a generator (``(f.remote(x) for x in xs)``) to bound
    what is pending; a list of refs already submitted also works (then only the waiting is bounded).
    A failed task's own exception is re-raised (its ``RayTaskError`` chained as the cause); other Ray
    errors (a worker that died, a lost object) are re-raised as they are.
    """
    results = dict(completed(submissions, max_in_flight))
    return [results[i] for i in range(len(results))]


def completed(submissions: Iterable[ray.ObjectRef],
              max_in_flight: int | None = None) -> Iterator[tuple[int, Any]]:
    """``(submission index, result)`` of each task as it finishes, with :func:`gather`'s window and
    failure rules. For callers that merge results on the fly (the driver keeps no list of them) or
    report progress."""
    limit = max_in_flight if max_in_flight is not None else default_in_flight()
    if limit < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {limit}")
    source = iter(submissions)
    pending: dict[ray.ObjectRef, int] = {}
    submitted = 0
    failure: ray.exceptions.RayError | None = None

    def submit_up_to_limit() -> None:
        nonlocal submitted
        while len(pending) < limit:
            try:
                ref = next(source, None)
            except BaseException:  # building a submission failed: let the running ones finish first
                ray.wait(list(pending), num_returns=len(pending))
                raise
            if ref is None:
                return
            pending[ref] = submitted
            submitted += 1

    submit_up_to_limit()
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            index = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as e:
                failure = failure or e
                continue
            if failure is None:
                yield index, result
        if failure is None:
            submit_up_to_limit()
    if failure is not None:
        if isinstance(failure, ray.exceptions.RayTaskError) and isinstance(failure.cause, Exception):
            raise failure.cause from failure
        raise failure
