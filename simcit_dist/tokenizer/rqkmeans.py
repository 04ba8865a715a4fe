"""RQ-KMeans: residual k-means per level on the (concatenated) input embeddings.

Fitted once on a bounded sample of items (:meth:`RQKMeans.fit`); assignment is a stateless hard
nearest-codeword search per level, so it streams over any number of batches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from simcit_dist.tokenizer import kmeans as km
from simcit_dist.tokenizer.config import RQKMeansConfig
from simcit_dist.tokenizer.inputs import Batch, concat_modalities
from simcit_dist.tokenizer.quantizer import ResidualQuantizer

log = logging.getLogger(__name__)


class RQKMeans(nn.Module):
    kind = "rqkmeans"

    def __init__(self, cfg: RQKMeansConfig, input_dims: Mapping[str, int]) -> None:
        super().__init__()
        if not input_dims:
            raise ValueError("RQ-KMeans needs at least one modality column in input_dims")
        self.cfg = cfg
        self.input_dims = dict(input_dims)
        self.num_levels = cfg.num_levels
        self.codebook_size = cfg.codebook_size
        dim = sum(input_dims.values())
        self.quantizer = ResidualQuantizer(cfg.num_levels, cfg.codebook_size, dim, trainable=False)

    def latent(self, batch: Batch) -> Tensor:
        """(B, sum d_m): the concatenated inputs are the space that is quantised."""
        with torch.no_grad():
            return concat_modalities(batch, self.input_dims, self.cfg.normalize)

    def encode(self, batch: Batch) -> Tensor:
        return self.encode_with_distance(batch)[0]

    def encode_with_distance(self, batch: Batch) -> tuple[Tensor, Tensor]:
        if not bool(self.quantizer.initialized):
            raise RuntimeError("RQKMeans.encode called before fit(); fit it on a sample of items first")
        x = self.latent(batch)
        codes, x_hat = self.quantizer.encode(x)
        return codes, (x - x_hat).pow(2).sum(1).float()

    def codebooks(self) -> Tensor:
        return self.quantizer.stacked().detach()

    @torch.no_grad()
    def fit(self, sample_batches: Iterable[Batch]) -> dict[str, float]:
        """Residual k-means on up to ``max_sample`` items drawn from ``sample_batches``.

        Returns the mean squared residual after each level (it must shrink level by level).
        """
        x = self._collect(sample_batches)
        if x.shape[0] < self.codebook_size:
            raise ValueError(f"RQ-KMeans fit needs at least codebook_size={self.codebook_size} items, "
                             f"got {x.shape[0]}")
        generator = torch.Generator().manual_seed(self.cfg.seed)
        r = x
        metrics: dict[str, float] = {}
        for level in range(self.num_levels):
            centres = km.kmeans(r, self.codebook_size, self.cfg.iters, generator, self.cfg.init,
                                self.cfg.minibatch_size, self.cfg.backend)
            self.quantizer.codebooks[level] = centres
            idx, d2 = km.nearest(r, centres)
            r = r - centres[idx]
            metrics[f"residual_l{level}"] = float(d2.mean())
            log.info("RQ-KMeans level %d: mean squared residual %.4g", level, metrics[f"residual_l{level}"])
        self.quantizer.mark_initialized()
        return metrics

    def _collect(self, sample_batches: Iterable[Batch]) -> Tensor:
        parts, n = [], 0
        device = self.quantizer.codebooks.device
        for batch in sample_batches:
            x = concat_modalities(batch, self.input_dims, self.cfg.normalize).to(device)
            parts.append(x[: self.cfg.max_sample - n])
            n += parts[-1].shape[0]
            if n >= self.cfg.max_sample:
                break
        if not parts:
            raise ValueError("RQ-KMeans fit got no sample batches")
        return torch.cat(parts)
