"""What every benchmark shares: figures with targets, machine info, the module entry point, data.

A benchmark module defines ``NAME``, ``TITLE``, ``FIGURES`` (the names it must report, the same
in smoke and full mode) and ``run(ctx) -> BenchResult``; ``python -m bench.<module> --out x.json
[--smoke]`` runs it in a fresh process with a fresh local Ray (see :func:`module_main`), which is
how ``bench/run_all.py`` calls it. Every figure is a ratio or a per-item cost measured side by
side in the same process, so the machine's load affects both sides alike.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/x.py` from a checkout
    sys.path.insert(0, str(REPO))

from simcit_dist.worker_env import WORKER_ENV_VARS  # noqa: E402

log = logging.getLogger("bench")

# Logical CPUs of the local Ray: 2 training workers plus Ray Data read tasks must fit on a 2-core box
# (the test suite uses the same setting). Recorded with every result.
RAY_NUM_CPUS = max(4, os.cpu_count() or 1)


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: str = ""  # e.g. ">= 0.9"; empty: reported, no target
    passed: bool | None = None  # None when there is no target (or nothing was measured)
    note: str = ""


def check(value: float, op: str, threshold: float) -> bool | None:
    """Target check; NaN (not measured) is neither a pass nor a fail."""
    if value is None or math.isnan(value):
        return None
    return {">=": value >= threshold, "<=": value <= threshold}[op]


def figure(name: str, value: float, unit: str, target: tuple[str, float] | None = None, note: str = "") -> Figure:
    value = float(value) if value is not None else math.nan
    if target is None:
        return Figure(name, value, unit, "", None, note)
    op, threshold = target
    return Figure(name, value, unit, f"{op} {threshold:g}", check(value, op, threshold), note)


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) and not math.isnan(a) else math.nan


@dataclass
class BenchResult:
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, *args: Any, **kwargs: Any) -> Figure:
        fig = figure(*args, **kwargs)
        self.figures.append(fig)
        return fig


@dataclass
class BenchContext:
    smoke: bool
    work: Path  # scratch and cached data of this benchmark
    data: Path  # synthetic datasets shared by benchmarks (re-used when the config matches)

    def pick(self, smoke: Any, full: Any) -> Any:
        return smoke if self.smoke else full


def machine_info(smoke: bool) -> dict[str, Any]:
    import psutil
    import ray
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "cpu_count": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "cpu_model": cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "torch_threads": torch.get_num_threads(),
        "ray_num_cpus": RAY_NUM_CPUS,
        "ray_version": ray.__version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "load_avg_1m": load[0],
        "smoke": smoke,
    }


def cpu_model() -> str:
    """'<model name> (<widest x86 vector ISA>)' from /proc/cpuinfo: results are comparable across runs
    only on the same CPU (this sandbox's VMs have come as AVX-512 Xeons and as AVX2 EPYCs)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    fields = dict(line.split(":", 1) for line in info.split("\n\n", 1)[0].splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    isa = next((name for flag, name in (("amx_tile", "AMX"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))
                if flag in flags), "")
    model = fields.get("model name", platform.processor() or "unknown")
    return f"{model} ({isa})" if isa else model


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def start_ray(num_cpus: int = RAY_NUM_CPUS) -> None:
    """A fresh local Ray for this process (never joins another user's cluster on the machine)."""
    import ray

    if ray.is_initialized():
        return
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", **WORKER_ENV_VARS}})
    ray.data.DataContext.get_current().enable_progress_bars = False


def to_json(module_name: str, title: str, result: BenchResult | None, machine: dict[str, Any], seconds: float,
            error: str | None, expected: list[str]) -> dict[str, Any]:
    figures = [asdict(f) for f in result.figures] if result else []
    got = {f["name"] for f in figures}
    for name in expected:  # a failed or partial run still has every key, with NaN values
        if name not in got:
            figures.append(asdict(Figure(name, math.nan, "", "", None, "not measured" + (f": {error}" if error else ""))))
    unexpected = sorted(got - set(expected))
    if unexpected:
        raise ValueError(f"bench {module_name}: figures {unexpected} are not in its FIGURES list")
    order = {n: i for i, n in enumerate(expected)}
    figures.sort(key=lambda f: order[f["name"]])
    return {"name": module_name, "title": title, "machine": machine, "seconds": round(seconds, 1),
            "error": error, "figures": figures, "details": result.details if result else {}}


def module_main(name: str, title: str, expected: list[str], run: Callable[[BenchContext], BenchResult],
                needs_ray: bool = True) -> None:
    """Entry point of ``python -m bench.<module>``: run, then write the result JSON (also on failure)."""
    from simcit_dist.logs import setup_logging

    parser = argparse.ArgumentParser(description=title)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI); same figures")
    parser.add_argument("--out", required=True, help="result JSON path")
    parser.add_argument("--work", default=str(REPO / "runs" / "bench" / "work"), help="scratch directory")
    parser.add_argument("--data", default=str(REPO / "runs" / "bench" / "data"), help="synthetic data cache")
    args = parser.parse_args()
    setup_logging(os.environ.get("SIMCIT_LOG_LEVEL", "WARNING"))
    log.setLevel(logging.INFO)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
    ctx = BenchContext(args.smoke, Path(args.work) / name, Path(args.data))
    ctx.work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    machine = machine_info(args.smoke)
    result, error = None, None
    try:
        if needs_ray:
            start_ray()
        result = run(ctx)
    except Exception as e:  # the JSON records the failure; run_all reports it and exits non-zero
        log.exception("benchmark %s failed", name)
        error = f"{type(e).__name__}: {e}"
    machine["load_avg_1m_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    out = to_json(name, title, result, machine, time.time() - start, error, expected)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(dumps(out))
    if error:
        sys.exit(1)


def dumps(obj: Any) -> str:
    """Strict JSON (NaN and infinities become null: "not measured")."""
    return json.dumps(_finite(obj), indent=2, default=_json_default, allow_nan=False) + "\n"


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return _finite(obj.tolist())
    return obj


def _json_default(obj: Any) -> Any:
    return str(obj)


# ---- timing -------------------------------------------------------------------------------------


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def median(xs: list[float]) -> float:
    s = sorted(xs)
    if not s:
        return math.nan
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else 0.5 * (s[mid - 1] + s[mid])


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def captured_logs(logger: str) -> Iterator[list[logging.LogRecord]]:
    """Records of ``logger`` emitted inside the block (at INFO and above)."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    target = logging.getLogger(logger)
    handler, level = _Keep(logging.INFO), target.level
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield records
    finally:
        target.removeHandler(handler)
        target.setLevel(level)


# ---- data ---------------------------------------------------------------------------------------

ALGR_MODALITIES = {"emb": 512}  # AL-GR: one 512-d multimodal embedding per item


def algr_like(num_items: int, pairs_per_item: float = 1.0, num_users: int = 0, seed: int = 0) -> Any:
    """Synthetic config shaped like AL-GR: one 512-d ``emb`` column, co-occurrence pairs, 8x16x16 leaves.
    Files of 64k items (128 MB); catalogs under 256k items get files of 2k items (4 MB), so smoke runs
    still have several files per reader and actor, and the file size never changes with the catalog size."""
    from simcit_dist.inputs.synthetic import SyntheticConfig

    return SyntheticConfig(num_items=num_items, modalities=dict(ALGR_MODALITIES), latent_dim=32,
                           branching=[8, 16, 16], level_scales=[1.0, 0.45, 0.2], pairs_per_item=pairs_per_item,
                           num_users=num_users, chunk_items=65_536 if num_items >= 262_144 else 2048, seed=seed)


def synthetic_dataset(root: Path, cfg: Any, with_pairs: bool = False, with_interactions: bool = False,
                      num_tasks: int = 4) -> Path:
    """Generate (or re-use, when ``dataset.json`` has the same config) a synthetic dataset under ``root``."""
    from simcit_dist.config_loader import to_dict
    from simcit_dist.inputs.generate import generate_synthetic

    meta = root / "dataset.json"
    want = {"config": to_dict(cfg), "pairs": with_pairs, "interactions": with_interactions}
    if meta.exists():
        got = json.loads(meta.read_text())
        if got.get("config") == want["config"] and (root / "catalog").is_dir() and \
                (not with_pairs or (root / "pairs").is_dir()) and \
                (not with_interactions or (root / "interactions").is_dir()):
            log.info("re-using synthetic dataset %s (%d items)", root, cfg.num_items)
            return root
    t = time.time()
    generate_synthetic(cfg, str(root), None, num_tasks, with_pairs, with_interactions)
    log.info("generated %d items at %s in %.0f s", cfg.num_items, root, time.time() - t)
    return root


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@contextmanager
def moto_s3(own_process: bool = False) -> Iterator[tuple[str, Any]]:
    """A local S3 server (moto) with one bucket: yields (``s3://bucket``, StorageConfig).

    ``own_process``: run the server as a separate process (``python -m moto.server``) instead of a
    thread of this one, so concurrent client requests do not share this process's GIL with it."""
    import boto3
    from moto.server import ThreadedMotoServer

    from simcit_dist.storage import StorageConfig

    server: Any = None
    process: subprocess.Popen[bytes] | None = None
    if own_process:
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        endpoint = f"http://127.0.0.1:{port}"
    else:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                              region_name="us-east-1")
        for attempt in range(100):  # a separate server takes a moment to listen
            try:
                client.create_bucket(Bucket="simcit-bench")
                break
            except Exception:
                if process is None or attempt == 99:
                    raise
                time.sleep(0.1)
        yield "s3://simcit-bench", StorageConfig(s3_endpoint=endpoint, s3_region="us-east-1",
                                                 s3_access_key_id="bench", s3_secret_access_key="bench")
    finally:
        if server is not None:
            server.stop()
        if process is not None:
            process.terminate()
            process.wait(timeout=30)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def upload_dir(local: Path, uri: str, storage: Any) -> None:
    """Copy every file under ``local`` to ``uri`` (same relative paths)."""
    from simcit_dist.storage import copy_file, resolve

    src_root = resolve(str(local))
    dst_root = resolve(uri, storage)
    for f in sorted(local.rglob("*")):
        if f.is_file():
            rel = f.relative_to(local).as_posix()
            copy_file(src_root.child(rel), dst_root.child(rel))


def initialised_simcit(catalog: Path, out: Path, cfg: Any = None, sample: int = 4096) -> str:
    """A SimCIT artifact whose codebooks are k-means-initialised on a catalog sample, without training:
    its encode cost is that of a trained one (same network), so it serves throughput and memory runs."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from simcit_dist.data.schemas import embedding_columns
    from simcit_dist.storage import resolve
    from simcit_dist.tokenizer import TokenizerConfig, build_tokenizer, save_artifact
    from simcit_dist.tokenizer.inputs import arrow_to_batch

    if (out / "tokenizer.json").exists():  # the artifact's metadata file
        return str(out)
    tables, rows = [], 0
    for f in sorted(catalog.glob("*.parquet")):
        tables.append(pq.read_table(f))
        rows += tables[-1].num_rows
        if rows >= sample:
            break
    table = pa.concat_tables(tables).slice(0, sample)
    dims = embedding_columns(table.schema)
    cfg = cfg or TokenizerConfig()
    torch.manual_seed(0)
    tok = build_tokenizer(cfg, dims)
    tok.init_codebooks(arrow_to_batch(table, list(dims)))  # type: ignore[attr-defined]
    save_artifact(tok, cfg, dims, resolve(str(out)))
    return str(out)
