"""End to end on an AL-GR-shaped synthetic catalog: generate -> train the tokenizer (some steps, with the
co-occurrence pair view) -> assign SIDs -> simulate the next day -> re-tokenize, with the time,
cost per item and memory of every stage and the SID metrics of both versions.

``run_all`` runs it at 5k items (smoke) or 1M items; ``bench/e2e_10m.py`` (``make e2e-10m``) runs
the same stages at 10M items and writes ``runs/e2e-10m/report.md``. Every stage is the library
call its job makes (``generate_synthetic``, ``run_tokenizer_training``, ``run_assignment``,
``simulate_next_day``), in this process with a local Ray.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    BenchContext,
    BenchResult,
    algr_like,
    directory_bytes,
    dumps,
    machine_info,
    module_main,
)
from bench.memory import MemoryMonitor

REPO = Path(__file__).resolve().parents[1]
NAME = "e2e"
TITLE = "End to end: generate -> tokenizer -> assign -> next day -> re-tokenize (cost per item, memory)"
FIGURES = [
    "generate_us_per_item", "tokenizer_items_per_s", "assign_us_per_item", "next_day_us_per_item",
    "retokenize_us_per_item", "driver_peak_rss_mb", "worker_peak_rss_mb", "collision_rate", "max_items_per_code",
    "retokenize_sid_changed",
]
STAGES = ("generate", "tokenizer", "assign", "next_day", "retokenize")


@dataclass
class E2EConfig:
    num_items: int
    run_dir: Path
    steps: int = 50  # tokenizer optimizer steps
    batch_size: int = 8192  # global batch of the tokenizer
    num_partitions: int = 64  # SID exchange partitions
    join_partitions: int = 16  # partitions of the tokenizer's pair-view join
    # Share of the items the pair view is built for. A short run reads steps x batch rows of a view
    # that holds ~2 rows of two embeddings per item (~8.5 KB per item at 512-d): the whole view of
    # 10M items would be ~90 GB (+ 45 GB of join scratch), so e2e_10m.py builds only what it trains on.
    pair_view_fraction: float = 1.0
    num_tasks: int = 4  # generator tasks
    reuse_data: bool = False  # keep an already generated catalog of the same config
    monitor_interval_s: float = 0.5
    # The tokenizer section of the AL-GR preset (what users run on this catalog shape), with a
    # codebook size fit for the catalog and dead-code resets scaled to a short run.
    tokenizer_preset: Path = REPO / "conf" / "tokenizer_algr.yaml"
    # The preset's 8192 costs ~20 s per 8192-row step on 2 CPU cores (e2e_10m.py --codebook-size).
    codebook_size: int = 256
    # Suffix space of the collision resolution. 50 steps leave coarse SIDs: at 1M items the
    # centred SimCIT gave 2,314 distinct SIDs among 5,000 held-back items and one code tuple held
    # 4,370 items, past a production-like 4,095. The run measures the pipeline at scale, so its
    # suffix space is sized for a short run; the report states the largest group it resolved.
    max_suffix: int = 65_535


def run(ctx: BenchContext) -> BenchResult:
    cfg = E2EConfig(num_items=ctx.pick(5_000, 1_000_000), run_dir=ctx.work / "run", steps=ctx.pick(4, 50),
                    codebook_size=ctx.pick(64, 256),
                    batch_size=ctx.pick(512, 8192), num_partitions=ctx.pick(4, 64),
                    join_partitions=ctx.pick(2, 32), monitor_interval_s=ctx.pick(0.1, 0.5))
    report = run_e2e(cfg)
    res = BenchResult(details=report)
    stages = report["stages"]
    res.add("generate_us_per_item", stages["generate"]["us_per_item"], "us/item", note="catalog + pairs")
    res.add("tokenizer_items_per_s", stages["tokenizer"]["items_per_s"], "items/s",
            note=f"steady state, {cfg.steps} steps of {cfg.batch_size}")
    res.add("assign_us_per_item", stages["assign"]["us_per_item"], "us/item")
    res.add("next_day_us_per_item", stages["next_day"]["us_per_item"], "us/item")
    res.add("retokenize_us_per_item", stages["retokenize"]["us_per_item"], "us/item")
    res.add("driver_peak_rss_mb", report["memory"]["driver_peak_rss_mb"], "MiB")
    res.add("worker_peak_rss_mb", report["memory"]["worker_peak_rss_mb"], "MiB")
    res.add("collision_rate", stages["assign"]["metrics"].get("collision_rate", math.nan), "fraction",
            note="items sharing codes before suffixes")
    res.add("max_items_per_code", stages["assign"]["metrics"].get("max_per_code", math.nan), "items",
            note=f"largest group given suffixes (suffix space {cfg.max_suffix + 1:,})")
    res.add("retokenize_sid_changed", stages["retokenize"]["sid_changed_fraction"], "fraction",
            note="items whose SID changed overnight")
    return res


def _timed(name: str, fn: Callable[[], Any], out: dict[str, Any], interval: float) -> Any:
    """Run one stage under its own (sampled) memory monitor; records seconds and memory."""
    t = time.perf_counter()
    with MemoryMonitor(interval_s=interval, kernel_peak=False) as mon:
        value = fn()
    out[name] = {"seconds": time.perf_counter() - t, "memory": mon.report().summary_mb()}
    return value


def run_e2e(cfg: E2EConfig) -> dict[str, Any]:
    from simcit_dist.config_loader import to_dict
    from simcit_dist.inputs.generate import generate_synthetic
    from simcit_dist.inputs.next_day import NextDayConfig, simulate_next_day

    syn = algr_like(cfg.num_items, pairs_per_item=1.0)
    data, day2 = cfg.run_dir / "data", cfg.run_dir / "day2" / "catalog"
    stages: dict[str, Any] = {}
    iv = cfg.monitor_interval_s
    clear_previous_run(cfg.run_dir, keep_data=cfg.reuse_data)
    tokenizer = e2e_tokenizer(cfg)
    with MemoryMonitor(interval_s=iv) as whole:
        if cfg.reuse_data and generated_with(data, syn):
            stages["generate"] = {"seconds": math.nan, "memory": {}, "reused": True}
        else:
            _timed("generate", lambda: generate_synthetic(syn, str(data), None, cfg.num_tasks, True, False), stages, iv)
        tok = _timed("tokenizer", lambda: _train_tokenizer(cfg, data, tokenizer), stages, iv)
        assign = _timed("assign", lambda: _assign(cfg, data / "catalog", tok.artifact_uri, None), stages, iv)
        counts = _timed("next_day", lambda: simulate_next_day(str(data / "catalog"), str(day2), NextDayConfig(), syn),
                        stages, iv)
        nightly = _timed("retokenize", lambda: _assign(cfg, day2, tok.artifact_uri, "LATEST"), stages, iv)
    _summarise(cfg, stages, tok, assign, counts, nightly)
    report = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in cfg.__dict__.items()},
              "tokenizer": to_dict(tokenizer),
              "catalog_gb": directory_bytes(data / "catalog") / 1e9, "stages": stages,
              "memory": whole.report().summary_mb(), "workers": [w.__dict__ for w in whole.report().workers[:12]]}
    return report


def clear_previous_run(run_dir: Path, keep_data: bool) -> None:
    """Remove an earlier run's outputs: its tokenizer checkpoints would otherwise be *resumed* (the
    job continues a run of the same name), so a rerun would time a finished run and reuse its
    tokenizer. ``data/`` stays when it is to be reused."""
    if not run_dir.is_dir():
        return
    for child in run_dir.iterdir():
        if keep_data and child.name == "data":
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def generated_with(data: Path, syn: Any) -> bool:
    """``data/`` holds a finished catalog generated with exactly the config ``syn`` (its
    ``dataset.json`` is written last, on publish). Another size or seed is not reused."""
    from simcit_dist.config_loader import to_dict

    manifest = data / "dataset.json"
    if not manifest.exists():
        return False
    return bool(json.loads(manifest.read_text()).get("config") == json.loads(json.dumps(to_dict(syn))))


def _train_tokenizer(cfg: E2EConfig, data: Path, tokenizer: Any) -> Any:
    from simcit_dist.tokenizer_training.config import (
        TokenizerDataConfig,
        TokenizerJobConfig,
        TokenizerRunSection,
        TokenizerTrainConfig,
    )
    from simcit_dist.tokenizer_training.job import run_tokenizer_training

    job = TokenizerJobConfig(
        tokenizer=tokenizer,
        data=TokenizerDataConfig(catalog=str(data / "catalog"), pairs=str(data / "pairs"), modalities=["emb"],
                                 join_partitions=cfg.join_partitions, pair_view_fraction=cfg.pair_view_fraction,
                                 holdout_fraction=0.01,
                                 holdout_max_items=5000),
        train=TokenizerTrainConfig(num_workers=2, batch_size=cfg.batch_size, max_steps=cfg.steps, epochs=1,
                                   warmup_steps=min(10, cfg.steps), log_every=max(1, cfg.steps // 10),
                                   checkpoint_every=max(1, cfg.steps)),
        run=TokenizerRunSection(storage_path=str(cfg.run_dir / "ray"), name="tokenizer", run_dir=str(cfg.run_dir / "tokenizer")),
    )
    return run_tokenizer_training(job)


def e2e_tokenizer(cfg: E2EConfig) -> Any:
    """The preset's tokenizer section with ``cfg.codebook_size`` codes per level and about ten
    dead-code resets over the run (the preset's every-200-steps never fires in a short run; on
    196k AL-GR-like items, 50 steps, resets every 5 steps left 7,027 distinct SIDs, every 10 5,696)."""
    from simcit_dist.config_loader import build, load_yaml
    from simcit_dist.tokenizer.config import TokenizerConfig

    section = load_yaml(cfg.tokenizer_preset)["tokenizer"]
    section["simcit"].update(codebook_size=cfg.codebook_size, dead_code_every=max(2, cfg.steps // 10))
    return build(TokenizerConfig, section, "tokenizer")


def _assign(cfg: E2EConfig, catalog: Path, artifact: str, previous: str | None) -> dict[str, Any]:
    from bench.bench_assign import assignment_job
    from simcit_dist.assign.config import AssignJobConfig

    return assignment_job(AssignJobConfig(
        catalog=str(catalog), tokenizer=artifact, output=str(cfg.run_dir / "sids"), previous=previous,
        num_partitions=cfg.num_partitions, actors=2, max_suffix=cfg.max_suffix, hit_rate_sample=5000,
        run_dir=str(cfg.run_dir / ("retokenize" if previous else "assign"))))


def _summarise(cfg: E2EConfig, stages: dict[str, Any], tok: Any, assign: dict[str, Any], counts: dict[str, int],
               nightly: dict[str, Any]) -> None:
    from bench.bench_tokenizer import steady_rate
    from simcit_dist.data.parquet_io import count_rows
    from simcit_dist.storage import resolve

    n = cfg.num_items
    stages["generate"]["us_per_item"] = 1e6 * stages["generate"]["seconds"] / n
    pair_rows = count_rows(resolve(str(cfg.run_dir / "ray" / "tokenizer" / "pair_views")))
    stages["tokenizer"].update(pair_view_rows=pair_rows, pair_view_fraction=cfg.pair_view_fraction,
                               pair_view_rows_per_item=pair_rows / (n * cfg.pair_view_fraction))
    stages["tokenizer"].update(steps=tok.steps, items_per_s=steady_rate(tok.history),
                               wall_items_per_s=tok.steps * cfg.batch_size / stages["tokenizer"]["seconds"],
                               final={k: v for k, v in tok.final_metrics.items() if k.startswith("holdout")})
    stages["assign"].update(us_per_item=1e6 * stages["assign"]["seconds"] / n, timings=assign["timings"],
                            metrics=assign["manifest_metrics"], max_suffix=assign["max_suffix"],
                            version=assign["version"])
    stages["next_day"].update(us_per_item=1e6 * stages["next_day"]["seconds"] / n, counts=counts)
    items2 = nightly["items"]
    stages["retokenize"].update(us_per_item=1e6 * stages["retokenize"]["seconds"] / items2, items=items2,
                                timings=nightly["timings"], metrics=nightly["manifest_metrics"], diff=nightly["diff"],
                                sid_changed_fraction=nightly["diff"].get("sid_changed", math.nan) / items2,
                                version=nightly["version"])


def report_markdown(report: dict[str, Any], title: str, command: str) -> str:
    """The human-readable run report (``runs/e2e-10m/report.md``)."""
    from simcit_dist.report import markdown

    stages = report["stages"]
    n = int(report["config"]["num_items"])
    rows = [{"stage": s, "seconds": stages[s]["seconds"], "us/item": stages[s].get("us_per_item", math.nan),
             "driver peak MiB": stages[s]["memory"].get("driver_peak_rss_mb", math.nan),
             "largest worker MiB": stages[s]["memory"].get("worker_peak_rss_mb", math.nan)} for s in STAGES]
    tok = stages["tokenizer"]
    machine = report.get("machine", {})
    parts = [
        f"# {title}\n",
        f"Reproduce: `{command}`\n",
        f"{n:,} synthetic items, one 512-d `emb` column ({report['catalog_gb']:.1f} GB of Parquet), AL-GR-like "
        f"co-occurrence pairs. Machine: {machine.get('cpu_count')} CPUs, {machine.get('memory_gb')} GB RAM, "
        f"load average {machine.get('load_avg_1m', math.nan):.1f} at the start; {machine.get('date', '')}.\n",
        "## Stages\n\n" + markdown.table(rows),
        f"\nTokenizer: {tok['steps']} steps of global batch {report['config']['batch_size']} on 2 workers over "
        f"{tok.get('pair_view_rows', 0):,} pair-view rows of {tok.get('pair_view_fraction', 1.0):.0%} of the items "
        f"({tok.get('pair_view_rows_per_item', math.nan):.2f} per item), "
        f"{tok['items_per_s']:,.0f} items/s steady state ({tok['wall_items_per_s']:,.0f} items/s over the whole stage "
        "incl. the pair-view join, worker start-up and held-out evaluation).\n",
        "Assignment stage times (s): " + json.dumps({k: round(v, 1) for k, v in stages["assign"]["timings"].items()}),
        "\nRe-tokenization stage times (s): "
        + json.dumps({k: round(v, 1) for k, v in stages["retokenize"]["timings"].items()}) + "\n",
        "## Memory (peak over the whole run)\n\n" + markdown.key_value_table(report["memory"]),
        "\nPeak RSS counts pages of Ray's shared-memory object store a process touched; 'anon' is private memory.\n",
        "## SID metrics (day 1)\n\n" + markdown.key_value_table(stages["assign"]["metrics"]),
        "\n## Next day and re-tokenization\n\n" + markdown.key_value_table(stages["next_day"]["counts"], "items", "count"),
        "\n" + markdown.key_value_table({k: v for k, v in stages["retokenize"]["diff"].items() if k != "usage_drift"}),
        "\n## Tokenizer held-out metrics\n\n" + markdown.key_value_table(tok["final"]),
    ]
    return "\n".join(parts)


def write_report(report: dict[str, Any], run_dir: Path, title: str, command: str) -> Path:
    report["machine"] = report.get("machine") or machine_info(smoke=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(dumps(report))
    path = run_dir / "report.md"
    path.write_text(report_markdown(report, title, command))
    return path


if __name__ == "__main__":
    module_main(NAME, TITLE, FIGURES, run)
