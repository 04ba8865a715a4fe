"""What every job entry point shares: argv -> (config, overrides), logging, and joining Ray.

Jobs are thin: parse args, load the typed config, call the library. ``ray.init()`` with no
address joins the cluster of ``ray job submit`` (RAY_ADDRESS) or starts a local one.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python jobs/x.py` from a checkout or a Ray working_dir
    sys.path.insert(0, str(REPO))

from simcit_dist.config_loader import ConfigError, load_config  # noqa: E402
from simcit_dist.logs import setup_logging  # noqa: E402
from simcit_dist.worker_env import WORKER_ENV_VARS  # noqa: E402

T = TypeVar("T")


def parse(description: str, cls: type[T], default_config: str | None = None,
          extra: dict[str, dict[str, Any]] | None = None) -> tuple[T, argparse.Namespace]:
    """``--config FILE`` plus ``key=value`` overrides; exits with the config error on bad input."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=default_config, help="YAML config (see conf/)")
    parser.add_argument("--num-cpus", type=int, default=None,
                        help="CPUs of a local Ray started by this job (ignored when joining a cluster)")
    for flag, kwargs in (extra or {}).items():
        parser.add_argument(flag, **kwargs)
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.batch_size=4096")
    args = parser.parse_args()
    setup_logging()
    try:
        cfg = load_config(cls, args.config, args.overrides)
    except ConfigError as e:
        parser.exit(2, f"config error: {e}\n")
    return cfg, args


def run_main(main: Callable[[], None]) -> None:
    """Run a job's ``main``; input and config errors end with one clear line, not a traceback."""
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        cause = getattr(e, "cause", None) or e  # unwrap Ray's RayTaskError
        logging.getLogger("simcit_dist.job").error("%s: %s", type(cause).__name__, cause)
        sys.exit(1)


def local_runtime_env() -> dict[str, Any]:
    """Runtime env of a local Ray started by a job (no dashboard: see ``quiet_local_ray_workers``)."""
    return {"env_vars": {"PYTHONPATH": str(REPO), **WORKER_ENV_VARS},
            "worker_process_setup_hook": "simcit_dist.logs.quiet_local_ray_workers"}


def init_ray(num_cpus: int | None = None) -> None:
    """Join the cluster (``ray job submit`` sets RAY_ADDRESS) or start a local Ray."""
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"log_to_driver": True}
    if not os.environ.get("RAY_ADDRESS"):
        kwargs["num_cpus"] = num_cpus or max(4, os.cpu_count() or 1)
        kwargs["include_dashboard"] = False
        kwargs["runtime_env"] = local_runtime_env()
    ray.init(**kwargs)
