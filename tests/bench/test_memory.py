"""The benchmark memory helper: per-process peaks of the driver and of its (worker) descendants."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from bench.memory import MemoryMonitor, MiB, read_memory

MARKER = "simcit-bench-memory-test"

# Allocates and touches ``mb`` MiB (optionally frees it at once), says "ready", then waits for stdin to close.
CHILD = """
import sys
mb, free = int(sys.argv[1]), sys.argv[2] == "free"
block = bytearray(mb * 1024 * 1024)
block[::4096] = b"x" * len(block[::4096])
if free:
    del block
print("ready", flush=True)
sys.stdin.read()
"""


@contextmanager
def child(mb: int, free: bool = False) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(mb), "free" if free else "keep", MARKER],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def _marked(p: psutil.Process) -> bool:
    return MARKER in p.cmdline()


def test_larger_allocation_reports_larger_peak() -> None:
    with child(20) as small, child(220) as big:
        with MemoryMonitor(interval_s=0.05, worker_filter=_marked) as mon:
            time.sleep(0.3)
        report = mon.report()
    peaks = {w.pid: w for w in report.workers}
    assert set(peaks) == {small.pid, big.pid}
    assert peaks[big.pid].peak_rss > peaks[small.pid].peak_rss + 150 * MiB
    assert peaks[big.pid].peak_anon > peaks[small.pid].peak_anon + 150 * MiB
    assert report.max_worker_rss == peaks[big.pid].peak_rss
    assert report.driver.pid == psutil.Process().pid and report.driver.peak_rss > 0
    assert report.summary_mb()["workers_seen"] == 2.0 and report.seconds > 0


def test_driver_peak_follows_its_allocations() -> None:
    with MemoryMonitor(interval_s=0.02, worker_filter=_marked) as mon:
        before = read_memory(psutil.Process().pid)
        block = bytearray(120 * MiB)
        block[::4096] = b"y" * len(block[::4096])
        time.sleep(0.1)
        del block
    assert before is not None
    assert mon.report().driver.peak_rss >= before["rss"] + 100 * MiB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is read from /proc")
def test_spike_between_samples_is_not_missed() -> None:
    """The child allocates and frees before the first sample; the kernel high-water mark still shows it."""
    with child(200, free=True) as proc:
        now = read_memory(proc.pid)
        with MemoryMonitor(interval_s=10.0, worker_filter=_marked) as mon:
            pass
    assert now is not None and now["rss"] < 150 * MiB  # the memory really was given back
    (peak,) = mon.report().workers
    assert peak.peak_rss > 200 * MiB


# Writes ``mb`` MiB into a POSIX shared-memory segment (tmpfs pages, like Ray's object store), says "ready".
SHARED_CHILD = """
import sys
from multiprocessing import shared_memory
mb = int(sys.argv[1])
shm = shared_memory.SharedMemory(create=True, size=mb * 1024 * 1024)
shm.buf[::4096] = b"s" * len(shm.buf[::4096])
print("ready", flush=True)
sys.stdin.read()
shm.close()
shm.unlink()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not Path("/dev/shm").is_dir(),
                    reason="RssShmem is read from /proc; needs /dev/shm")
def test_shared_pages_count_in_rss_but_not_in_rss_without_store() -> None:
    """Pages of a shared segment (what object-store reads leave in a worker's RSS) are split out."""
    proc = subprocess.Popen([sys.executable, "-c", SHARED_CHILD, "160", MARKER],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with MemoryMonitor(interval_s=0.05, worker_filter=_marked) as mon:
            time.sleep(0.2)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
    (peak,) = mon.report().workers
    assert peak.peak_shmem >= 150 * MiB
    assert peak.peak_rss >= peak.peak_rss_no_store + 150 * MiB
    assert peak.peak_rss_no_store < 120 * MiB  # an interpreter, not the segment
    assert mon.report().summary_mb()["worker_peak_rss_no_store_mb"] == peak.peak_rss_no_store / MiB


def test_bad_interval_is_rejected() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        MemoryMonitor(interval_s=0)
