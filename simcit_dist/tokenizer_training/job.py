"""Driver of distributed tokenizer training: validate, plan, run the ``TorchTrainer``, report.

Everything that can be wrong with the inputs or the config is checked here, before any worker
starts: catalog columns and dims, batch size vs rows and workers, the tokenizer kind.
RQ-KMeans has no gradient step: it is fitted on a streamed sample in one Ray task instead.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ray.train import DataConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from simcit_dist.cpu_claims import pool_cpus
from simcit_dist.data.parquet_io import check_files
from simcit_dist.data.schemas import ITEM_ID, PARTNER_ID, PARTNER_PREFIX
from simcit_dist.storage import Location, read_json, resolve
from simcit_dist.tokenizer_training.config import TokenizerJobConfig
from simcit_dist.tokenizer_training.data import resolve_modalities
from simcit_dist.tokenizer_training.evaluation import HISTORY_FILE
from simcit_dist.tokenizer_training.kmeans_fit import fit_rqkmeans
from simcit_dist.tokenizer_training.pair_views import build_pair_views
from simcit_dist.tokenizer_training.plan import TokenizerPlan, TokenizerRunResult
from simcit_dist.tokenizer_training.training_rows import holdout_dataset, training_dataset
from simcit_dist.tokenizer_training.worker import train_loop_per_worker
from simcit_dist.train.run import ray_run_config

log = logging.getLogger(__name__)
FAIL_ENV = "SIMCIT_FAIL_AT_STEP"  # fault injection for tests: the first attempt's rank 1 raises at this step


def plan_training(cfg: TokenizerJobConfig) -> tuple[TokenizerPlan, Location, list[str]]:
    """Validate inputs and derive the run plan: (plan, training source, columns to read)."""
    catalog = resolve(cfg.data.catalog, cfg.storage)
    check_files(catalog)  # every footer, in parallel: a bad file fails here by name, before Ray Train starts
    input_dims = resolve_modalities(catalog, cfg.data.modalities)
    source, columns, with_partner = catalog, [ITEM_ID, *input_dims], False
    if cfg.data.pairs:
        pairs = resolve(cfg.data.pairs, cfg.storage)
        check_files(pairs)
        views = resolve(cfg.data.pair_views or _under_run(cfg, "pair_views"), cfg.storage)
        build_pair_views(catalog, pairs, list(input_dims), views, cfg.data.join_partitions,
                         cfg.data.pair_view_fraction)
        source, with_partner = views, True
        columns += [PARTNER_ID, *(PARTNER_PREFIX + m for m in input_dims)]
    id_columns = [ITEM_ID, PARTNER_ID] if with_partner else [ITEM_ID]
    train_rows = training_dataset(source, id_columns, cfg.data.holdout_fraction, False, cfg.data.seed).count()
    steps_per_epoch = train_rows // cfg.train.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"train.batch_size ({cfg.train.batch_size}) is larger than the {train_rows} training rows of "
            f"{source.uri}: lower it or add data"
        )
    total = cfg.train.max_steps or steps_per_epoch * cfg.train.epochs
    epochs = -(-total // steps_per_epoch)  # the budget is honoured: as many epochs as the steps take
    if cfg.train.max_steps and epochs != cfg.train.epochs:
        log.warning("train.max_steps=%d overrides train.epochs=%d: %d epochs of %d steps (%d training rows, "
                    "global batch %d)", total, cfg.train.epochs, epochs, steps_per_epoch, train_rows,
                    cfg.train.batch_size)
    plan = TokenizerPlan(cfg, input_dims, with_partner, total, steps_per_epoch, train_rows,
                         cfg.run.artifact_uri(), epochs)
    return plan, source, columns


def _under_run(cfg: TokenizerJobConfig, name: str) -> str:
    return f"{cfg.run.storage_path.rstrip('/')}/{cfg.run.name}/{name}"


def _data_config(deterministic: bool) -> DataConfig:
    """Split only the training stream; with ``deterministic``, in a fixed block order and without
    locality (Ray's ``OutputSplitter`` then assigns blocks by order alone, never by arrival time)."""
    if not deterministic:
        return DataConfig(datasets_to_split=["train"])
    options = DataConfig.default_ingest_options()
    options.preserve_order = True
    return DataConfig(datasets_to_split=["train"], execution_options={"train": options}, enable_shard_locality=False)


def run_tokenizer_training(cfg: TokenizerJobConfig) -> TokenizerRunResult:
    """Train (or resume training of) the configured tokenizer; returns where the artifact is."""
    if cfg.tokenizer.kind == "rqkmeans":
        return fit_rqkmeans(cfg)
    plan, source, columns = plan_training(cfg)
    log.info("training %s on %d rows (%s): %d steps of global batch %d over %d workers (%d per worker)",
             cfg.tokenizer.kind, plan.train_rows, source.uri, plan.total_steps, cfg.train.batch_size,
             cfg.train.num_workers, plan.local_batch)
    catalog = resolve(cfg.data.catalog, cfg.storage)
    datasets: dict[str, Any] = {
        "train": training_dataset(source, columns, cfg.data.holdout_fraction, cfg.data.shuffle_files, cfg.data.seed),
        "holdout": holdout_dataset(catalog, [ITEM_ID, *plan.input_dims], cfg.data.holdout_fraction,
                                   cfg.data.holdout_max_items),
    }
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"plan": plan, "fail_at_step": int(os.environ.get(FAIL_ENV, "0"))},
        scaling_config=ScalingConfig(num_workers=cfg.train.num_workers, use_gpu=cfg.train.use_gpu,
                                     # the workers are fed by Ray Data read tasks: leave them a CPU
                                     resources_per_worker={"CPU": pool_cpus(cfg.train.cpus_per_worker,
                                                                            cfg.train.num_workers,
                                                                            "tokenizer training workers")}),
        run_config=ray_run_config(cfg.run, cfg.storage)[0],
        datasets=datasets,
        dataset_config=_data_config(cfg.data.deterministic),
    )
    result = trainer.fit()
    outputs = read_json(resolve(plan.artifact_uri, cfg.storage).child(HISTORY_FILE))
    steps = int(outputs["final"].get("step", 0))
    return TokenizerRunResult(plan.artifact_uri, steps, outputs["final"], outputs["history"],
                              result.checkpoint.path if result.checkpoint else None, outputs.get("plots", {}),
                              epochs=steps / plan.steps_per_epoch)
