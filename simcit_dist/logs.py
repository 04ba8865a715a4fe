"""Logging set-up for jobs and rank-0 filtering for distributed workers.

Library modules only call ``logging.getLogger(__name__)``; jobs call :func:`setup_logging`.
"""

from __future__ import annotations

import logging
import os


class RankZeroFilter(logging.Filter):
    """Drop records from ranks other than 0 unless they are warnings or worse."""

    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        return self.rank == 0 or record.levelno >= logging.WARNING


def setup_logging(level: str | int | None = None) -> None:
    """Configure the root logger once (level from ``SIMCIT_LOG_LEVEL``, default INFO)."""
    level = level or os.environ.get("SIMCIT_LOG_LEVEL", "INFO")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("botocore", "s3fs", "urllib3", "filelock", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def filter_to_rank_zero(rank: int) -> None:
    """Install :class:`RankZeroFilter` on the root handlers of this (worker) process."""
    setup_logging()
    for handler in logging.getLogger().handlers:
        handler.addFilter(RankZeroFilter(rank))
