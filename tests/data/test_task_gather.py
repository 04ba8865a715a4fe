"""task_gather.gather: submission order, a bounded window, and a failure that stops submitting and
leaves no task running (so the caller can delete the staging prefix safely). No ``ray.cancel``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import ray

from simcit_dist.data.task_gather import completed, gather


@ray.remote
def _work(index: int, seconds: float, markers: str, fail_at: int = -1, after_failure: bool = False) -> int:
    # after_failure: start the sleep only once the failing task has failed, so this task is still
    # running when the driver sees the failure however slowly Ray starts the workers.
    deadline = time.monotonic() + 60
    while after_failure and not Path(markers, "failed").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(seconds)
    if index == fail_at:
        Path(markers, "failed").touch()
        raise ValueError(f"bad file {index}")
    Path(markers, f"done-{index}").touch()
    return index * 10


def _finished(markers: Path) -> int:
    return len(list(markers.glob("done-*")))


def test_results_in_submission_order_with_a_bounded_window(tmp_path, ray_local) -> None:
    pending_at_submit: list[int] = []

    def submissions():
        for i in range(8):
            pending_at_submit.append(i - _finished(tmp_path))  # tasks submitted but not finished
            # Later submissions are faster, so results complete out of order.
            yield _work.remote(i, 0.4 if i < 3 else 0.05, str(tmp_path))

    assert gather(submissions(), max_in_flight=3) == [i * 10 for i in range(8)]
    assert max(pending_at_submit) <= 2, pending_at_submit  # never a 4th task while 3 are pending


def test_failure_stops_submitting_and_waits_for_running_tasks(tmp_path, ray_local) -> None:
    submitted: list[int] = []

    def submissions():
        for i in range(20):
            submitted.append(i)
            # Task 1 fails while task 0 is still running.
            yield _work.remote(i, 0.05 if i == 1 else 1.0, str(tmp_path), fail_at=1, after_failure=i != 1)

    with pytest.raises(ValueError, match="bad file 1") as raised:
        gather(submissions(), max_in_flight=2)
    assert isinstance(raised.value.__cause__, ray.exceptions.RayTaskError)
    assert submitted == [0, 1]  # nothing submitted after the failure
    assert (tmp_path / "done-0").exists()  # the task still running was awaited, not abandoned


def test_list_of_refs_and_bad_window(ray_local, tmp_path) -> None:
    assert gather([_work.remote(i, 0.0, str(tmp_path)) for i in range(3)]) == [0, 10, 20]
    assert gather([]) == []
    with pytest.raises(ValueError, match="max_in_flight must be >= 1"):
        gather([], max_in_flight=0)


def test_a_failing_submission_waits_for_the_running_tasks(tmp_path, ray_local) -> None:
    def submissions():
        yield _work.remote(0, 1.0, str(tmp_path))
        raise KeyError("no such partition")

    with pytest.raises(KeyError, match="no such partition"):
        gather(submissions(), max_in_flight=4)
    assert (tmp_path / "done-0").exists()


def test_completed_yields_each_result_as_it_finishes_then_raises_the_failure(tmp_path, ray_local) -> None:
    # Task 0 is slow: the fast ones come first, each with its submission index.
    fast_first = list(completed((_work.remote(i, 1.0 if i == 0 else 0.0, str(tmp_path)) for i in range(4)),
                                max_in_flight=4))
    assert fast_first[-1] == (0, 0)
    assert sorted(fast_first) == [(i, i * 10) for i in range(4)]
    seen: list[tuple[int, int]] = []
    with pytest.raises(ValueError, match="bad file 2"):
        for item in completed((_work.remote(i, 0.0, str(tmp_path), fail_at=2) for i in range(6)),
                              max_in_flight=1):
            seen.append(item)
    assert seen == [(0, 0), (1, 10)]  # one at a time: nothing after the failure was submitted
