"""Logging set-up: rank-0 filtering, Ray progress-bar lines left parseable, and the local-Ray hook
that quiets Ray Train's state-API poller."""

from __future__ import annotations

import json
import logging
from typing import Any

from ray._common.utils import load_class  # how Ray resolves a string worker_process_setup_hook

from simcit_dist.logs import (
    PLACEMENT_GROUP_CLEANER_LOGGER,
    RAY_TQDM_MAGIC,
    RankZeroFilter,
    quiet_local_ray_workers,
    setup_logging,
)
from tests.jobs_registry import load_job_module


def _record(level: int) -> logging.LogRecord:
    return logging.LogRecord("x", level, __file__, 1, "msg", None, None)


def _local_runtime_env() -> dict[str, Any]:
    return load_job_module("jobs/_common.py").local_runtime_env()  # type: ignore[no-any-return]


def test_rank_zero_filter_passes_rank0_and_warnings_of_others() -> None:
    assert RankZeroFilter(0).filter(_record(logging.INFO))
    assert not RankZeroFilter(1).filter(_record(logging.INFO))
    assert RankZeroFilter(1).filter(_record(logging.WARNING))


def test_local_ray_hook_silences_the_placement_group_cleaner_warnings_only() -> None:
    from ray.train.v2._internal.execution.controller import placement_group_cleaner

    logger = placement_group_cleaner.logger
    # The constant must name the module's logger: a Ray upgrade that moves it brings the noise back.
    assert logger.name == PLACEMENT_GROUP_CLEANER_LOGGER
    hook = load_class(_local_runtime_env()["worker_process_setup_hook"])
    assert hook is quiet_local_ray_workers
    before = logger.level
    try:
        logger.setLevel(logging.NOTSET)
        assert logger.isEnabledFor(logging.WARNING)
        hook()
        assert not logger.isEnabledFor(logging.WARNING)
        assert logger.isEnabledFor(logging.ERROR)
        assert logging.getLogger("ray.train").isEnabledFor(logging.WARNING)  # nothing else is quieted
    finally:
        logger.setLevel(before)


def test_ray_progress_bar_state_passes_the_root_handler_unprefixed() -> None:
    """Inside a Ray Train worker ``print`` goes to the root logger; tqdm_ray's state line must come
    out as JSON the driver can parse (``ray._private.worker.process_tqdm``), other lines prefixed."""
    from ray.experimental import tqdm_ray

    assert tqdm_ray.RAY_TQDM_MAGIC == RAY_TQDM_MAGIC
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging("INFO")
        formatter = root.handlers[0].formatter
        assert formatter is not None
        state = {"__magic_token__": tqdm_ray.RAY_TQDM_MAGIC, "x": 3, "pos": 0, "desc": "Running Dataset",
                 "total": None, "unit": " row", "ip": "127.0.0.1", "pid": 1, "uuid": "u", "closed": False}
        line = json.dumps(state) + "\n"  # what tqdm_ray prints in a worker
        record = logging.LogRecord("root", logging.INFO, __file__, 1, line, None, None)
        assert json.loads(formatter.format(record)) == state
        plain = formatter.format(logging.LogRecord("simcit", logging.INFO, __file__, 1, "hello", None, None))
        assert plain.endswith(" INFO simcit: hello") and plain != "hello"
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_ray_loggers_named_by_file_path_lose_info_but_keep_warnings() -> None:
    """Ray Train V2's context logs every ``ray.train.report`` at INFO under a logger named by its
    file path (outside the ``ray`` hierarchy): our handler drops those lines, not Ray's warnings,
    and not our own INFO."""
    from ray.train.v2._internal.execution import context

    assert context.logger.name == context.__file__  # still named by path: else this filter is moot
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging("INFO")
        handler = root.handlers[0]

        def passes(name: str, level: int) -> bool:
            return bool(handler.filter(logging.LogRecord(name, level, __file__, 1, "m", None, None)))

        assert not passes(context.logger.name, logging.INFO)
        assert passes(context.logger.name, logging.WARNING)
        assert passes("simcit_dist.recommender.trainer", logging.INFO)
        assert passes("ray.train", logging.INFO)  # the ray hierarchy keeps the level Ray gives it
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
