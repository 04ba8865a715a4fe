"""RQ-VAE (TIGER, Rajput et al. 2023) behind the tokenizer interface.

    x = concat_m x_m (sorted column order, missing modalities zero-filled)   (B, sum d_m)
    z = Enc(x) (B, D);  z_q = sum_l e_l with e_l the nearest codeword of residual r_l
    x_hat = Dec(z + sg(z_q - z))           straight-through estimator
    loss = mse(x_hat, x) + sum_l ||sg(r_l) - e_l||^2 + beta ||r_l - sg(e_l)||^2
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from simcit_dist.tokenizer.config import RQVAEConfig
from simcit_dist.tokenizer.inputs import Batch, concat_modalities
from simcit_dist.tokenizer.layers import mlp
from simcit_dist.tokenizer.losses import Gather
from simcit_dist.tokenizer.quantizer import ResidualQuantizer
from simcit_dist.tokenizer.train_utils import batch_perplexity, inference_mode


class RQVAE(nn.Module):
    kind = "rqvae"

    def __init__(self, cfg: RQVAEConfig, input_dims: Mapping[str, int]) -> None:
        super().__init__()
        if not input_dims:
            raise ValueError("RQ-VAE needs at least one modality column in input_dims")
        self.cfg = cfg
        self.input_dims = dict(input_dims)
        self.num_levels = cfg.num_levels
        self.codebook_size = cfg.codebook_size
        in_dim = sum(input_dims.values())
        self.encoder = mlp(in_dim, cfg.hidden_dims, cfg.latent_dim, cfg.activation, cfg.dropout)
        self.decoder = mlp(cfg.latent_dim, list(reversed(cfg.hidden_dims)), in_dim, cfg.activation, cfg.dropout)
        self.quantizer = ResidualQuantizer(cfg.num_levels, cfg.codebook_size, cfg.latent_dim, cfg.shared_codebook)

    def inputs(self, batch: Batch) -> Tensor:
        return concat_modalities(batch, self.input_dims)  # (B, sum d_m)

    # ---- Tokenizer interface -----------------------------------------------------------------
    def latent(self, batch: Batch) -> Tensor:
        with inference_mode(self):
            return self.encoder(self.inputs(batch))

    def encode(self, batch: Batch) -> Tensor:
        return self.encode_with_distance(batch)[0]

    def encode_with_distance(self, batch: Batch) -> tuple[Tensor, Tensor]:
        with inference_mode(self):
            z = self.encoder(self.inputs(batch))
            codes, z_hat = self.quantizer.encode(z)
            return codes, (z - z_hat).pow(2).sum(1).float()

    def codebooks(self) -> Tensor:
        return self.quantizer.stacked().detach()

    # ---- training ----------------------------------------------------------------------------
    def forward(self, batch: Batch, step: int = 0, total_steps: int = 1,
                gather: Gather | None = None) -> tuple[Tensor, dict[str, float]]:
        return self.training_loss(batch, step, total_steps, gather)

    def training_loss(self, batch: Batch, step: int, total_steps: int,
                      gather: Gather | None = None) -> tuple[Tensor, dict[str, float]]:
        """Reconstruction + VQ loss of a local batch. Per-item losses average over the local batch:
        with equal local batch sizes (required by ``gather`` anyway) DDP's gradient average is the
        global mean. ``step``/``total_steps`` are unused (no schedule) but keep one signature."""
        x = self.inputs(batch)
        z = self.encoder(x)
        self.maybe_init_codebooks(z, gather)
        with torch.autocast(device_type=z.device.type, enabled=False):
            z_q, codes, vq_loss = self.quantizer.ste_quantize(z.float(), self.cfg.beta)
        self.quantizer.add_usage(codes)
        recon = (self.decoder(z_q) - x).pow(2).mean()
        loss = recon + vq_loss
        with torch.no_grad():
            perplexity = batch_perplexity(codes, self.codebook_size).tolist()
        metrics = {"loss": float(loss.detach()), "loss_recon": float(recon.detach()),
                   "loss_vq": float(vq_loss.detach())}
        metrics.update({f"perplexity_l{level}": p for level, p in enumerate(perplexity)})
        return loss, metrics

    def init_codebooks(self, batch: Batch) -> None:
        """Initialise the codebooks from one batch now (see :meth:`SimCIT.init_codebooks`)."""
        self.init_codebooks_from_latents(self.latent(batch))

    def init_codebooks_from_latents(self, z: Tensor) -> None:
        if self.cfg.kmeans_init:
            generator = torch.Generator().manual_seed(self.cfg.seed)
            self.quantizer.init_kmeans(z.detach(), self.cfg.kmeans_iters, generator)
        else:
            self.quantizer.mark_initialized()
        self._init_seen = True

    def maybe_init_codebooks(self, z: Tensor, gather: Gather | None = None) -> None:
        """k-means initialisation on the first batch (gathered across ranks) unless already done."""
        if getattr(self, "_init_seen", False):
            return
        if bool(self.quantizer.initialized):
            self._init_seen = True
            return
        self.init_codebooks_from_latents(gather(z.detach()) if gather is not None else z)

    def residuals(self, batch: Batch) -> list[Tensor]:
        with inference_mode(self):
            return self.quantizer.residuals(self.encoder(self.inputs(batch)))

    def reset_dead_codes(self, residuals_by_level: Sequence[Tensor], generator: torch.Generator,
                         usage: Tensor | None = None) -> Tensor:
        return self.quantizer.reset_dead_codes(residuals_by_level, self.cfg.dead_code_min_count, generator, usage)
