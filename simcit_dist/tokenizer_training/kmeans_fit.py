"""RQ-KMeans through the tokenizer job: no gradient steps, one fit on a streamed sample.

The sample (``rqkmeans.max_sample`` training rows, held-back items excluded) is streamed into
one Ray task, which fits the residual k-means, scores the held-back items like the DDP path
does, and writes the same artifact and history files, so assignment and reports treat all
tokenizers the same.
"""

from __future__ import annotations

import logging
from typing import Any

import ray
import torch

from simcit_dist.data.parquet_io import count_rows
from simcit_dist.data.schemas import ITEM_ID
from simcit_dist.storage import Location, exists, read_json, resolve
from simcit_dist.tokenizer import ArtifactError, build_tokenizer, load_artifact
from simcit_dist.tokenizer.inputs import arrow_to_batch
from simcit_dist.tokenizer_training.config import TokenizerJobConfig
from simcit_dist.tokenizer_training.data import resolve_modalities
from simcit_dist.tokenizer_training.evaluation import HISTORY_FILE, evaluate_holdout, write_outputs
from simcit_dist.tokenizer_training.plan import TokenizerPlan, TokenizerRunResult
from simcit_dist.tokenizer_training.training_rows import holdout_dataset, training_dataset
from simcit_dist.train.state import TrainState

log = logging.getLogger(__name__)


@ray.remote
def _fit_task(plan: TokenizerPlan, train: Any, holdout: Any) -> dict[str, float]:
    cfg = plan.cfg
    modalities = list(plan.input_dims)
    tokenizer: Any = build_tokenizer(cfg.tokenizer, plan.input_dims)
    batches = (arrow_to_batch(t, modalities, with_partner=False)
               for t in train.iter_batches(batch_size=65_536, batch_format="pyarrow"))
    fit_metrics = tokenizer.fit(batches)
    device = torch.device("cpu")
    metrics, plots = evaluate_holdout(tokenizer, holdout, plan, device)
    final = {"step": 1.0, **metrics}
    write_outputs(tokenizer, plan, TrainState(step=1, history=[{"step": 1.0, **fit_metrics}]), final, plots)
    return final


def fit_rqkmeans(cfg: TokenizerJobConfig) -> TokenizerRunResult:
    catalog = resolve(cfg.data.catalog, cfg.storage)
    input_dims = resolve_modalities(catalog, cfg.data.modalities)
    columns = [ITEM_ID, *input_dims]
    artifact = resolve(cfg.run.artifact_uri(), cfg.storage)
    if not _already_fitted(artifact, cfg):
        plan = TokenizerPlan(cfg, input_dims, False, 1, 1, count_rows(catalog), artifact.uri)
        train = training_dataset(catalog, columns, cfg.data.holdout_fraction, cfg.data.shuffle_files,
                                 cfg.data.seed)
        holdout = holdout_dataset(catalog, columns, cfg.data.holdout_fraction, cfg.data.holdout_max_items)
        for ds in (train, holdout):
            # Blocks in file order, not arrival order: the sample (limit) and the k-means input
            # order, hence the codebooks, are then the same on every run of the same inputs.
            ds.context.execution_options.preserve_order = True
        ray.get(_fit_task.remote(plan, train.limit(cfg.tokenizer.rqkmeans.max_sample), holdout))
    outputs = read_json(artifact.child(HISTORY_FILE))
    return TokenizerRunResult(artifact.uri, 1, outputs["final"], outputs["history"], None,
                              outputs.get("plots", {}))


def _already_fitted(artifact: Location, cfg: TokenizerJobConfig) -> bool:
    """A complete artifact of this run with the same tokenizer config: the same command re-run
    reuses it, as a trained tokenizer's run resumes from its last checkpoint (new run.name: refit)."""
    if not exists(artifact.child(HISTORY_FILE)):
        return False
    try:
        _, fitted, _ = load_artifact(artifact)
    except ArtifactError:
        return False
    if fitted != cfg.tokenizer:
        return False
    log.info("%s: RQ-KMeans already fitted by this run; reusing it (a new run.name refits)", artifact.uri)
    return True
