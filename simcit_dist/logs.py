"""Logging set-up for jobs and rank-0 filtering for distributed workers.

Library modules only call ``logging.getLogger(__name__)``; jobs call :func:`setup_logging`.
"""

from __future__ import annotations

import importlib.util
import logging
import os


class RankZeroFilter(logging.Filter):
    """Drop records from ranks other than 0 unless they are warnings or worse."""

    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        return self.rank == 0 or record.levelno >= logging.WARNING


LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# ray.experimental.tqdm_ray.RAY_TQDM_MAGIC (tests check they agree): a worker's progress bar sends
# its state to the driver as one JSON line carrying this token.
RAY_TQDM_MAGIC = "__ray_tqdm_magic_token__"


class LineFormatter(logging.Formatter):
    """``LINE_FORMAT``, except for Ray's progress-bar state lines, which pass through verbatim.

    Ray Train routes a worker's ``print`` through the root logger, and Ray Data's progress bars
    inside a train worker ``print`` their state as JSON for the driver to decode: with our prefix
    in front the driver cannot parse it, warns "[tqdm_ray] Failed to decode" once and drops every
    update of those bars.
    """

    def __init__(self) -> None:
        super().__init__(LINE_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if RAY_TQDM_MAGIC in message:
            return message
        return super().format(record)


def _ray_package_dir() -> str | None:
    spec = importlib.util.find_spec("ray")  # finds the package without importing it
    locations = spec.submodule_search_locations if spec else None
    return os.path.join(list(locations)[0], "") if locations else None


class RayFileLoggerFilter(logging.Filter):
    """Drop info/debug records of Ray modules that name their logger by file path.

    A few Ray modules call ``logging.getLogger(__file__)`` (Ray Train V2 logs "Reporting training
    result ..." with the whole metrics dict on every ``ray.train.report``). Such a logger sits
    outside the ``ray`` hierarchy, whose own level Ray sets, so with our INFO root every report
    printed one long line from each worker. Ray's own warnings still pass.
    """

    def __init__(self) -> None:
        super().__init__()
        self.package_dir = _ray_package_dir()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or not self.package_dir:
            return True
        return not record.name.startswith(self.package_dir)


def setup_logging(level: str | int | None = None) -> None:
    """Configure the root logger once (level from ``SIMCIT_LOG_LEVEL``, default INFO)."""
    level = level or os.environ.get("SIMCIT_LOG_LEVEL", "INFO")
    handler = logging.StreamHandler()
    handler.setFormatter(LineFormatter())
    handler.addFilter(RayFileLoggerFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("botocore", "s3fs", "urllib3", "filelock", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# Ray Train V2's PlacementGroupCleaner asks the state API (served by the dashboard) once a second
# whether the train controller is alive, and warns on every failed query. A local Ray started by a
# job runs without a dashboard, so it would warn ~300 times in one demo; there the cleaner has
# nothing to do anyway (the driver's exit takes the whole local Ray down, placement groups too).
PLACEMENT_GROUP_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def quiet_local_ray_workers() -> None:
    """``worker_process_setup_hook`` of a local Ray started by a job.

    Silences the placement-group cleaner's state-API warnings (no dashboard; its errors still
    show), and pins ``RAY_ADDRESS`` to this worker's own cluster: the cleaner's state-API calls
    otherwise look for "the" local Ray and fail with "Found multiple active Ray instances" when
    another one runs on the machine."""
    import ray  # a Ray worker process: ray is loaded and connected already

    logging.getLogger(PLACEMENT_GROUP_CLEANER_LOGGER).setLevel(logging.ERROR)
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address


def filter_to_rank_zero(rank: int) -> None:
    """Install :class:`RankZeroFilter` on the root handlers of this (worker) process."""
    setup_logging()
    for handler in logging.getLogger().handlers:
        handler.addFilter(RankZeroFilter(rank))
