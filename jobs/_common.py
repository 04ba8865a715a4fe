"""What every job entry point shares: argv -> (config, overrides), logging, and joining Ray.

Jobs are thin: parse args, load the typed config, call the library. ``ray.init()`` with no
address joins the cluster of ``ray job submit`` (RAY_ADDRESS) or starts a local one.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python jobs/x.py` from a checkout or a Ray working_dir
    sys.path.insert(0, str(REPO))

from simcit_dist.config_loader import ConfigError, load_config  # noqa: E402
from simcit_dist.cpu_claims import LOCAL_RAY_ENV  # noqa: E402
from simcit_dist.failures import describe, is_input_error  # noqa: E402
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


def run_main(main: Callable[[], None], job: str | None = None) -> None:
    """Run a job's ``main``; every failure ends with ONE line naming the cause, as the last line.

    Bad input, config and storage failures print only that line (Ray's own tracebacks above it
    already show where). Anything else (a bug) prints its traceback first. Ray is shut down
    before the line is written, so no late worker output lands below it.
    """
    name = job or Path(sys.argv[0]).stem
    try:
        main()
    except KeyboardInterrupt:
        _final_line(f"{name} interrupted", 130)
    except Exception as e:  # noqa: BLE001 -- the one place a job's failure becomes its last line
        if not is_input_error(e):
            traceback.print_exc()
        _final_line(f"{name} failed: {describe(e)}", 1)


def _final_line(line: str, code: int) -> None:
    import ray  # only if the job got as far as using it

    if ray.is_initialized():
        ray.shutdown()
    sys.stdout.flush()
    print(line, file=sys.stderr, flush=True)
    sys.exit(code)


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
    local = not os.environ.get("RAY_ADDRESS")
    if local:
        # The machine's CPUs as Ray counts them (cgroup limits included) unless --num-cpus says
        # otherwise; pools that would starve their feeders on so few claim fractions (cpu_claims).
        if num_cpus:
            kwargs["num_cpus"] = num_cpus
        kwargs["include_dashboard"] = False
        kwargs["runtime_env"] = local_runtime_env()
    ray.init(**kwargs)
    if local:
        # Components that connect on their own (Ray Train's placement-group cleaner, Ray Data) would
        # otherwise guess the address and stop at "Found multiple active Ray instances" when another
        # Ray runs on the machine: point them at ours.
        os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
        os.environ[LOCAL_RAY_ENV] = "1"  # a fixed-size cluster: pools fit their claims to it


def log_split_metrics(job: str, report: dict[str, Any], k: int) -> None:
    """One line per split of a recommender run's metrics: Recall/NDCG@k beside most-popular's."""
    import logging

    log = logging.getLogger(job)
    for split in ("valid", "test"):
        m = report[split]
        log.info("%s: Recall@%d %.4f NDCG@%d %.4f (most popular: Recall@%d %.4f) over %d examples", split, k,
                 m[f"recall@{k}"], k, m[f"ndcg@{k}"], k, m[f"popular/recall@{k}"], m["count"])
