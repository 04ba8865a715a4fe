"""Item tokenizers: SimCIT and the RQ-VAE / RQ-KMeans baselines behind one interface.

    tok = build_tokenizer(TokenizerConfig(kind="simcit"), {"emb_text": 384, "emb_image": 512})
    loss, metrics = tok.training_loss(batch, step, total_steps)   # SimCIT, RQ-VAE
    codes = tok.encode(batch)                                     # (B, L) int64
"""

from __future__ import annotations

from simcit_dist.tokenizer.artifact import ArtifactError, artifact_hash, load_artifact, save_artifact
from simcit_dist.tokenizer.base import (
    FittableTokenizer,
    Tokenizer,
    TrainableTokenizer,
    as_module,
    build_tokenizer,
    is_trainable,
)
from simcit_dist.tokenizer.config import (
    RQKMeansConfig,
    RQVAEConfig,
    SimCITConfig,
    TemperatureSchedule,
    TokenizerConfig,
)
from simcit_dist.tokenizer.fit import fit_local
from simcit_dist.tokenizer.inputs import Batch, arrow_to_batch
from simcit_dist.tokenizer.losses import Gather, multiview_nt_xent
from simcit_dist.tokenizer.rqkmeans import RQKMeans
from simcit_dist.tokenizer.rqvae import RQVAE
from simcit_dist.tokenizer.schedule import gumbel_temperature
from simcit_dist.tokenizer.simcit import SimCIT

__all__ = [
    "RQVAE",
    "ArtifactError",
    "Batch",
    "FittableTokenizer",
    "Gather",
    "RQKMeans",
    "RQKMeansConfig",
    "RQVAEConfig",
    "SimCIT",
    "SimCITConfig",
    "TemperatureSchedule",
    "Tokenizer",
    "TokenizerConfig",
    "TrainableTokenizer",
    "artifact_hash",
    "as_module",
    "arrow_to_batch",
    "build_tokenizer",
    "fit_local",
    "gumbel_temperature",
    "is_trainable",
    "load_artifact",
    "multiview_nt_xent",
    "save_artifact",
]
