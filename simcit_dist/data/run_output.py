"""Run a data job into a staging prefix and publish it only if it passed its reject threshold.

Layout of a published output: the job's tables (``catalog/``, ``pairs/``, ...), ``rejects/``
(``REJECTS_SCHEMA``; at least one file, possibly empty) and ``summary.json``. The run directory
always gets ``<job>_summary.json``; when the run fails (a file-level error, or the reject
fraction of a table above ``max_reject_fraction``) the staged output is deleted, the previous
output at the target is left untouched, and the staged rejects move to ``<run_dir>/rejects/``
so the failure can be inspected.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simcit_dist.data.parquet_parts import PartWriter
from simcit_dist.data.rejects import RejectBuffer, RejectThresholdError, TableSummary, threshold_failures
from simcit_dist.data.schemas import REJECTS_SCHEMA
from simcit_dist.storage import (
    Location,
    delete_dir,
    exists,
    list_files,
    replace_dir,
    staging_sibling,
    write_json,
)

log = logging.getLogger(__name__)


SECRET_KEYS = ("s3_access_key_id", "s3_secret_access_key", "s3_session_token")


def default_run_dir(job: str, output: str) -> str:
    """``runs/<job>/<output's last name>-<hash of the whole output URI>``: the run directory of a
    job whose config names none. It follows the output, so two datasets (or two buckets with
    the same folder names) never write their summaries into one directory."""
    name = output.rstrip("/").rsplit("/", 1)[-1] or "output"
    return f"runs/{job}/{name}-{hashlib.sha256(output.rstrip('/').encode()).hexdigest()[:8]}"


def redact(config: Any) -> Any:
    """A config dict with credentials replaced, safe to write into summaries."""
    if isinstance(config, dict):
        return {k: ("<redacted>" if k in SECRET_KEYS and v is not None else redact(v)) for k, v in config.items()}
    if isinstance(config, list):
        return [redact(v) for v in config]
    return config


@dataclass
class RunReport:
    """What a converter / prepare run did: per-table counts, status, and where things went."""

    job: str
    output: str
    run_dir: str
    tables: dict[str, TableSummary] = field(default_factory=dict)
    status: str = "running"
    error: str | None = None
    seconds: float = 0.0
    max_reject_fraction: float = 0.01
    config: dict[str, Any] = field(default_factory=dict)

    def table(self, name: str) -> TableSummary:
        return self.tables.setdefault(name, TableSummary())

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "status": self.status, "error": self.error, "output": self.output,
                "run_dir": self.run_dir, "seconds": round(self.seconds, 3),
                "max_reject_fraction": self.max_reject_fraction,
                "tables": {k: v.to_dict() for k, v in sorted(self.tables.items())}, "config": redact(self.config)}


def run_staged(report: RunReport, target: Location, run_dir: Location, body: Callable[[Location], None]) -> RunReport:
    """Call ``body(staged)``; publish ``staged`` at ``target`` if it succeeded within the threshold."""
    start = time.time()
    staged = staging_sibling(target)
    try:
        body(staged)
    except Exception as e:
        report.seconds = time.time() - start
        _fail(report, staged, target, run_dir, f"{type(e).__name__}: {e}")
        raise
    delete_dir(scratch_dir(staged))
    report.seconds = time.time() - start
    _log_summary(report)
    failures = threshold_failures(report.tables, report.max_reject_fraction)
    if failures:
        message = _fail(report, staged, target, run_dir, "; ".join(failures))
        raise RejectThresholdError(message)
    if not list_files(staged.child("rejects")):
        PartWriter(staged.child("rejects", "part-none.parquet"), REJECTS_SCHEMA).close()
    report.status = "ok"
    write_json(staged.child("summary.json"), report.to_dict())
    replace_dir(staged, target)
    write_json(run_dir.child(f"{report.job}_summary.json"), report.to_dict())
    log.info("%s: published %s in %.1fs (summary in %s)", report.job, target.uri, report.seconds, run_dir.uri)
    return report


def _fail(report: RunReport, staged: Location, target: Location, run_dir: Location, error: str) -> str:
    kept = f"previous output at {target.uri} left unchanged" if exists(target) else f"nothing published at {target.uri}"
    rejects = staged.child("rejects")
    if exists(staged) and list_files(rejects):
        replace_dir(rejects, run_dir.child("rejects"))
        kept += f"; rejected rows in {run_dir.child('rejects').uri}"
    delete_dir(staged)
    report.status = "failed"
    report.error = f"{error} ({kept})"
    write_json(run_dir.child(f"{report.job}_summary.json"), report.to_dict())
    log.error("%s failed: %s", report.job, report.error)
    return report.error


def _log_summary(report: RunReport) -> None:
    for name, t in sorted(report.tables.items()):
        reasons = ", ".join(f"{r}={n}" for r, n in sorted(t.rejected.items())) or "none"
        log.info("%s %s: %d rows in, %d out, %d rejected (%.3f%%): %s%s", report.job, name, t.input_rows,
                 t.output_rows, t.rejected_rows, 100 * t.reject_fraction, reasons,
                 f"; null modality rows {t.missing_modality}" if t.missing_modality else "")


def write_rejects(staged: Location, name: str, rejects: RejectBuffer) -> None:
    """``<staged>/rejects/<name>.parquet`` when anything was rejected (empty buffers write nothing)."""
    if len(rejects):
        with PartWriter(staged.child("rejects", f"{name}.parquet"), REJECTS_SCHEMA) as w:
            w.write(rejects.table())


def scratch_dir(staged: Location) -> Location:
    """Intermediate files of a run; hidden from listings and deleted before publishing."""
    return staged.child("_scratch")
