"""Peak memory of the driver and of every Ray worker process, sampled in a background thread.

    with MemoryMonitor() as mon:          # the current process is the "driver"
        run_assignment(cfg)
    report = mon.report()                 # driver and per-worker peaks, in bytes

Workers are the descendants of the driver whose command line starts with ``ray::`` (Ray sets
that process title for every task/actor worker, ``ray::IDLE`` when idle). A local cluster
started by ``ray.init()`` is a child of the driver, so its raylet's workers are found without
any Ray API; processes of other users' clusters on the same machine are never counted.

Peak RSS is exact on Linux: each sample also reads the kernel's high-water mark ``VmHWM``
from ``/proc/<pid>/status``, so a spike between two samples is not missed (VmHWM covers the
process's whole life: start a fresh Ray per measurement). ``RssAnon`` (private heap) and
``RssShmem`` (pages of Ray's shared-memory object store the process touched) are sampled
too, because RSS counts shared object-store pages in every process that reads them: a pooled
worker's RSS grows with every page of the object store it has ever written or read (up to the
store's size, ``object_store_memory``), however flat its own memory. ``VmRSS - RssShmem`` (RSS
without those pages; Ray's memory monitor goes further and charges a worker RSS minus all shared
pages) is sampled as well.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

MiB = 1024 * 1024


@dataclass
class ProcessPeak:
    pid: int
    name: str  # what the process was running when its RSS was highest among the samples
    peak_rss: int = 0  # bytes: max of sampled VmRSS and the kernel's VmHWM
    peak_sampled_rss: int = 0  # bytes: max of sampled VmRSS only
    peak_anon: int = 0  # bytes: sampled RssAnon (private memory)
    peak_shmem: int = 0  # bytes: sampled RssShmem (shared memory, e.g. the object store)
    peak_rss_no_store: int = 0  # bytes: sampled VmRSS - RssShmem (RSS without the object-store pages)
    samples: int = 0
    tasks: list[str] = field(default_factory=list)  # every task/actor name seen (a pooled worker runs many)

    def update(self, mem: dict[str, int], kernel_peak: bool = True) -> None:
        self.peak_rss = max(self.peak_rss, mem["rss"], mem.get("hwm", 0) if kernel_peak else 0)
        self.peak_sampled_rss = max(self.peak_sampled_rss, mem["rss"])
        self.peak_anon = max(self.peak_anon, mem.get("anon", 0))
        self.peak_shmem = max(self.peak_shmem, mem.get("shmem", 0))
        self.peak_rss_no_store = max(self.peak_rss_no_store, mem["rss"] - mem.get("shmem", 0))
        self.samples += 1


def read_memory(pid: int) -> dict[str, int] | None:
    """Current memory of ``pid`` in bytes (rss, hwm, anon, shmem); None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return _psutil_memory(pid)
    except OSError:
        return None

    def kb(key: str) -> int:
        value = fields.get(key, "0 kB").split()
        return int(value[0]) * 1024 if value else 0

    if "VmRSS" not in fields:  # a zombie has no memory left
        return None
    return {"rss": kb("VmRSS"), "hwm": kb("VmHWM"), "anon": kb("RssAnon"), "shmem": kb("RssShmem")}


def _psutil_memory(pid: int) -> dict[str, int] | None:
    """Portable fallback (no /proc): RSS only."""
    try:
        rss = psutil.Process(pid).memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return {"rss": rss, "hwm": 0, "anon": rss, "shmem": 0}


def is_ray_worker(proc: psutil.Process) -> bool:
    """Task and actor workers (``ray::...``); not the raylet, GCS or other Ray system processes."""
    try:
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return bool(cmdline) and cmdline[0].startswith("ray::")


@dataclass
class MemoryReport:
    driver: ProcessPeak
    workers: list[ProcessPeak] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def max_worker_rss(self) -> int:
        return max((w.peak_rss for w in self.workers), default=0)

    @property
    def max_worker_anon(self) -> int:
        return max((w.peak_anon for w in self.workers), default=0)

    @property
    def max_worker_rss_no_store(self) -> int:
        return max((w.peak_rss_no_store for w in self.workers), default=0)

    def summary_mb(self) -> dict[str, float]:
        """The figures the benchmarks record (MiB)."""
        return {
            "driver_peak_rss_mb": self.driver.peak_rss / MiB,
            "driver_peak_anon_mb": self.driver.peak_anon / MiB,
            "worker_peak_rss_mb": self.max_worker_rss / MiB,
            "worker_peak_anon_mb": self.max_worker_anon / MiB,
            "worker_peak_shmem_mb": max((w.peak_shmem for w in self.workers), default=0) / MiB,
            "worker_peak_rss_no_store_mb": self.max_worker_rss_no_store / MiB,
            "workers_seen": float(len(self.workers)),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"driver": asdict(self.driver), "workers": [asdict(w) for w in self.workers],
                "seconds": self.seconds, **self.summary_mb()}


class MemoryMonitor:
    """Samples the driver (``driver_pid``, default this process) and its matching descendants."""

    def __init__(self, interval_s: float = 0.25, driver_pid: int | None = None,
                 worker_filter: Callable[[psutil.Process], bool] = is_ray_worker, kernel_peak: bool = True) -> None:
        """``kernel_peak=False`` uses sampled RSS only: for one phase of a run whose (pooled) workers
        already peaked in an earlier phase, since VmHWM covers a process's whole life."""
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self.kernel_peak = kernel_peak
        self.driver_pid = driver_pid or os.getpid()
        self.worker_filter = worker_filter
        self._driver = ProcessPeak(self.driver_pid, "driver")
        self._workers: dict[tuple[int, float], ProcessPeak] = {}  # (pid, create time): a reused pid is a new process
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0
        self._seconds = 0.0

    def __enter__(self) -> MemoryMonitor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("MemoryMonitor already started")
        self._start = time.perf_counter()
        self.sample()
        self._thread = threading.Thread(target=self._run, name="memory-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> MemoryReport:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self.sample()  # one last sample: the final high-water marks
            self._seconds = time.perf_counter() - self._start
        return self.report()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        mem = read_memory(self.driver_pid)
        if mem is not None:
            self._driver.update(mem, self.kernel_peak)
        for pid, created, name in self._worker_pids():
            mem = read_memory(pid)
            if mem is None:
                continue
            key = (pid, created)
            peak = self._workers.get(key)
            if peak is None:
                peak = self._workers[key] = ProcessPeak(pid, name)
            if mem["rss"] >= peak.peak_sampled_rss:
                peak.name = name
            if name not in peak.tasks and name != "ray::IDLE" and len(peak.tasks) < 20:
                peak.tasks.append(name)
            peak.update(mem, self.kernel_peak)

    def _worker_pids(self) -> list[tuple[int, float, str]]:
        try:
            children = psutil.Process(self.driver_pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        out = []
        for proc in children:
            try:
                created = proc.create_time()
                if not self.worker_filter(proc):
                    continue
                name = " ".join(proc.cmdline()[:1]) or proc.name()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            out.append((proc.pid, created, name))
        return out

    def report(self) -> MemoryReport:
        workers = sorted(self._workers.values(), key=lambda w: -w.peak_rss)
        seconds = self._seconds or (time.perf_counter() - self._start if self._start else 0.0)
        return MemoryReport(ProcessPeak(**asdict(self._driver)), [ProcessPeak(**asdict(w)) for w in workers], seconds)
