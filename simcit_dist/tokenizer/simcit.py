"""SimCIT (arXiv 2506.16683): contrastive multi-modal item tokenization.

    x_m --MLP_m--> z_m (B, D)            one encoder per modality
    p_m = softmax_m(q . z_m)             attention fusion, missing modalities masked out
    z = sum_m p_m z_m                    the fused latent that is quantised
    z_hat = SoftRQ(z)                    L levels of Gumbel-softmax residual quantisation
    loss = sum_v NT-Xent(g(z_hat), h_v)  views: every modality's h_m(z_m), plus the co-occurring
                                         partner's h_pair(z_partner) when the batch carries one

Inference assigns the hard argmin code per level. ``forward`` is :meth:`SimCIT.training_loss`,
so a DDP-wrapped model is called as ``ddp(batch, step, total_steps, gather)``.

Two choices differ from the public reference code, both because the Gumbel-softmax compares
noise with *squared distances*, whose scale the encoder otherwise sets freely:

- ``normalize_latent`` (default on) L2-normalises z. Without it the encoder inflates z to drown
  the noise; on the synthetic catalog the quantisation error grew ~100x within 100 steps and
  the level-0 code perplexity fell to ~5 of 16.
- ``gumbel_scale`` (default 0.1) scales the Gumbel(0, 1) noise relative to those unit-sphere
  distances; at scale 1 the noise dominated and codes collapsed the same way (perplexity ~4.6
  of 16), at 0-0.1 the level-0 perplexity stayed at 13-14.5 of 16.

The first training batch (or :meth:`SimCIT.init_codebooks`) initialises from data: it centres
each encoder's output (``center_init``; an untrained SiLU MLP maps all items to nearly one
direction, which made the first steps collapse the codes) and fits the codebooks by k-means.

The partner view is h_pair(fused latent of the partner), not its quantised reconstruction:
co-occurring items pull each other's codes together without quantising a second batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from simcit_dist.data.schemas import PARTNER_ID
from simcit_dist.tokenizer.config import SimCITConfig
from simcit_dist.tokenizer.inputs import (
    Batch,
    item_ids,
    modality_input,
    partner_column,
)
from simcit_dist.tokenizer.layers import mlp, projection_head
from simcit_dist.tokenizer.losses import Gather, multiview_nt_xent
from simcit_dist.tokenizer.quantizer import ResidualQuantizer
from simcit_dist.tokenizer.schedule import gumbel_temperature
from simcit_dist.tokenizer.train_utils import batch_perplexity, inference_mode


class SimCIT(nn.Module):
    kind = "simcit"

    def __init__(self, cfg: SimCITConfig, input_dims: Mapping[str, int]) -> None:
        super().__init__()
        if not input_dims:
            raise ValueError("SimCIT needs at least one modality column in input_dims")
        self.cfg = cfg
        self.input_dims = dict(input_dims)
        self.modalities = sorted(input_dims)  # module order is the sorted column order
        self.num_levels = cfg.num_levels
        self.codebook_size = cfg.codebook_size
        d = cfg.latent_dim
        self.encoders = nn.ModuleList(
            [mlp(input_dims[m], cfg.hidden_dims, d, cfg.activation, cfg.dropout) for m in self.modalities]
        )
        # Zero query: fusion starts as the plain mean of the modality latents.
        self.fusion_query = nn.Parameter(torch.zeros(d))
        self.quantizer = ResidualQuantizer(cfg.num_levels, cfg.codebook_size, d, cfg.shared_codebook)
        self.head = projection_head(d, cfg.proj_dim, cfg.projection, cfg.activation)  # g
        self.view_heads = nn.ModuleList(
            [projection_head(d, cfg.proj_dim, cfg.projection, cfg.activation) for _ in self.modalities]
        )  # h_m
        self.pair_head = projection_head(d, cfg.proj_dim, cfg.projection, cfg.activation) if cfg.use_pair_view else None

    # ---- encoder and fusion ------------------------------------------------------------------
    def encode_modalities(self, batch: Batch, partner: bool = False) -> tuple[Tensor, Tensor]:
        """(Z (B, M, D) modality latents, present (B, M) bool) of the items or of their partners."""
        latents, present = [], []
        for encoder, m in zip(self.encoders, self.modalities):
            x, has = modality_input(batch, partner_column(m) if partner else m, self.input_dims[m])
            if self.cfg.input_norm == "layernorm":
                # Catalogs arrive at any scale (PPMI-SVD views are ~0.1 per dimension): standardise each
                # vector, or a small-scale modality maps every item to nearly the same latent and the
                # contrastive loss starts (and stays) at chance. Zero-filled missing rows stay zero.
                x = nn.functional.layer_norm(x, (x.shape[1],))
            latents.append(encoder(x))
            present.append(has)
        return torch.stack(latents, dim=1), torch.stack(present, dim=1)

    def fuse(self, z_m: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
        """Attention fusion: (z (B, D), weights (B, M)). Rows with no modality at all keep every
        modality (their zero-filled latents) rather than a 0/0 softmax."""
        logits = z_m @ self.fusion_query  # (B, M)
        keep = present | ~present.any(dim=1, keepdim=True)
        weights = torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=1)
        z = torch.einsum("bm,bmd->bd", weights, z_m)
        if self.cfg.normalize_latent:
            z = nn.functional.normalize(z, dim=-1)
        return z, weights

    def fused_latent(self, batch: Batch) -> Tensor:
        z_m, present = self.encode_modalities(batch)
        return self.fuse(z_m, present)[0]

    # ---- Tokenizer interface -----------------------------------------------------------------
    def latent(self, batch: Batch) -> Tensor:
        """(B, D) fused latent that is quantised (eval mode, no grad)."""
        with inference_mode(self):
            return self.fused_latent(batch)

    def encode(self, batch: Batch) -> Tensor:
        return self.encode_with_distance(batch)[0]

    def encode_with_distance(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """(codes int64 (B, L) by hard argmin, ||z - sum_l C_l[c_l]||^2 float32 (B,))."""
        with inference_mode(self):
            z = self.fused_latent(batch)
            codes, z_hat = self.quantizer.encode(z)
            return codes, (z - z_hat).pow(2).sum(1).float()

    def codebooks(self) -> Tensor:
        return self.quantizer.stacked().detach()  # (L, K, D)

    # ---- training ----------------------------------------------------------------------------
    def forward(self, batch: Batch, step: int = 0, total_steps: int = 1,
                gather: Gather | None = None) -> tuple[Tensor, dict[str, float]]:
        return self.training_loss(batch, step, total_steps, gather)

    def training_loss(self, batch: Batch, step: int, total_steps: int,
                      gather: Gather | None = None) -> tuple[Tensor, dict[str, float]]:
        """Scalar loss and float metrics for one (local) batch; see :mod:`.losses` for ``gather``."""
        cfg = self.cfg
        temperature = gumbel_temperature(cfg.temperature, step, total_steps)
        self.maybe_init(batch, gather)
        z_m, present = self.encode_modalities(batch)
        z, fusion_w = self.fuse(z_m, present)
        with torch.autocast(device_type=z.device.type, enabled=False):
            # Distances divided by a small temperature: bf16 would scramble the assignment.
            quant = self.quantizer.soft_quantize(z.float(), temperature, cfg.gumbel_scale)
        self.quantizer.add_usage(quant.codes)
        views, valid, view_ids, related = self._views(batch, z_m, present)
        per_view = multiview_nt_xent(self.head(quant.z_hat), views, valid, item_ids(batch), view_ids, related,
                                     cfg.tau, cfg.symmetric, gather)
        weights = torch.ones_like(per_view)
        if self._pair_active(batch):
            weights[-1] = cfg.pair_weight
        reg = self._regularisers(quant.residual, z)
        loss = (weights * per_view).sum() + reg + self._unused_pair_head_term(batch)
        return loss, self._metrics(loss, per_view, temperature, quant.codes, quant.residual, fusion_w, reg)

    def _pair_active(self, batch: Batch) -> bool:
        return self.pair_head is not None and PARTNER_ID in batch

    def _views(self, batch: Batch, z_m: Tensor, present: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(views (B, V, P), valid (B, V), view item ids (B, V), related ids (B, R))."""
        ids = item_ids(batch)
        views = [head(z_m[:, i]) for i, head in enumerate(self.view_heads)]
        valid = [present[:, i] for i in range(len(self.modalities))]
        view_ids = [ids] * len(self.modalities)
        related = [ids]
        if self._pair_active(batch):
            assert self.pair_head is not None
            partner_ids = batch[PARTNER_ID].long()
            zp_m, p_present = self.encode_modalities(batch, partner=True)
            zp, _ = self.fuse(zp_m, p_present)
            views.append(self.pair_head(zp))
            valid.append((partner_ids >= 0) & p_present.any(dim=1))
            view_ids.append(partner_ids)
            related.append(partner_ids)
        return (torch.stack(views, dim=1), torch.stack(valid, dim=1), torch.stack(view_ids, dim=1),
                torch.stack(related, dim=1))

    def _regularisers(self, residual: Tensor, z: Tensor) -> Tensor:
        cfg = self.cfg
        extra = z.new_zeros(())
        if cfg.commitment_weight > 0:
            # ||z - z_hat||^2: pulls codewords towards the latents and the latents towards the codes.
            extra = extra + cfg.commitment_weight * residual.pow(2).sum(1).mean()
        if cfg.codeword_weight > 0:
            extra = extra + cfg.codeword_weight * self.quantizer.codeword_similarity()
        return extra

    def _unused_pair_head_term(self, batch: Batch) -> Tensor | float:
        """0 * pair-head parameters when the batch has no partners, so DDP (static graph, no
        find_unused_parameters) still sees a gradient for every parameter on every step."""
        if self.pair_head is None or self._pair_active(batch):
            return 0.0
        return 0.0 * sum(p.sum() for p in self.pair_head.parameters())

    @torch.no_grad()
    def _metrics(self, loss: Tensor, per_view: Tensor, temperature: float, codes: Tensor, residual: Tensor,
                 fusion_w: Tensor, extra: Tensor) -> dict[str, float]:
        names = [f"loss_view_{m}" for m in self.modalities] + (["loss_view_pair"] if per_view.numel() >
                                                                len(self.modalities) else [])
        names += [f"perplexity_l{level}" for level in range(self.num_levels)]
        names += ["quant_error", "loss_reg"] + [f"fusion_weight_{m}" for m in self.modalities]
        values = torch.cat([
            per_view.detach().float(),
            batch_perplexity(codes, self.codebook_size),
            residual.detach().pow(2).sum(1).mean().float().reshape(1),
            extra.detach().float().reshape(1),
            fusion_w.detach().float().mean(0),
        ])
        out = dict(zip(names, values.tolist()))  # one device sync for all metrics
        out["loss"] = float(loss.detach())
        out["temperature"] = temperature
        return out

    # ---- data-dependent initialisation and codebook health ------------------------------------
    def init_codebooks(self, batch: Batch) -> None:
        """Initialise from one batch now: centre the encoders' outputs (``center_init``), then
        k-means codebooks on the batch's fused latents (or mark the random ``normal`` init as
        final). Call it on rank 0 before wrapping in DDP, which then broadcasts the parameters
        (and the ``initialized`` flag) to every rank."""
        self._init_from_batch(batch, None)

    def init_codebooks_from_latents(self, z: Tensor) -> None:
        if self.cfg.codebook_init == "normal":
            self.quantizer.mark_initialized()
        else:
            generator = torch.Generator().manual_seed(self.cfg.seed)
            self.quantizer.init_kmeans(z.detach(), self.cfg.kmeans_iters, generator)
        self._init_seen = True

    def maybe_init(self, batch: Batch, gather: Gather | None = None) -> None:
        """Initialise from the first training batch unless that already happened
        (:meth:`init_codebooks`, a loaded state). With ``gather`` every rank centres with the
        global batch's means and clusters the same gathered latents with the same seed, so the
        replicas agree without a broadcast."""
        if not self._initialized():
            self._init_from_batch(batch, gather)

    def _init_from_batch(self, batch: Batch, gather: Gather | None) -> None:
        with inference_mode(self):
            if self.cfg.center_init:
                self._center_encoders(batch, gather)
            z = self.fused_latent(batch)
            self.init_codebooks_from_latents(gather(z) if gather is not None else z)

    def _center_encoders(self, batch: Batch, gather: Gather | None) -> None:
        """Shift each encoder's output bias so the batch's latents of that modality average zero.

        A freshly initialised SiLU MLP maps every item to nearly one direction (its positive
        hidden activations share a mean): on the AL-GR-like catalog, whose inputs are nearly
        orthogonal, the fused latents had mean pairwise cosine 0.93 and the reconstructions
        0.998. The first contrastive loss then sits far above chance (18 vs log 2N = 9.7), and
        the first steps pull it down by collapsing the codes (a level used ~5 of 256 codes after
        10 steps). Centred, the latents start ~orthogonal and the loss goes below chance instead.
        """
        z_m, present = self.encode_modalities(batch)  # (B, M, D), (B, M)
        z_m = z_m.float()  # sums in float32 also when the first step runs under bf16 autocast
        mask = present.unsqueeze(-1).float()
        stats = torch.cat([(z_m * mask).sum(0), mask.sum(0)], dim=1)  # (M, D + 1): sums, counts
        if gather is not None:
            stats = gather(stats.unsqueeze(0)).sum(0)
        means = stats[:, :-1] / stats[:, -1:].clamp_min(1.0)
        for encoder, mean in zip(self.encoders, means):
            assert isinstance(encoder, nn.Sequential)
            last = encoder[-1]
            assert isinstance(last, nn.Linear) and last.bias is not None
            last.bias.sub_(mean.to(last.bias.dtype))

    def _initialized(self) -> bool:
        # One device sync on the first call; afterwards a Python flag.
        if getattr(self, "_init_seen", False):
            return True
        done = bool(self.quantizer.initialized)
        self._init_seen = done
        return done

    def residuals(self, batch: Batch) -> list[Tensor]:
        """The hard path's residual entering each level, L tensors of (B, D) (for dead-code reset)."""
        with inference_mode(self):
            return self.quantizer.residuals(self.fused_latent(batch))

    def reset_dead_codes(self, residuals_by_level: Sequence[Tensor], generator: torch.Generator,
                         usage: Tensor | None = None) -> Tensor:
        """See :meth:`ResidualQuantizer.reset_dead_codes`; uses ``dead_code_min_count``."""
        return self.quantizer.reset_dead_codes(residuals_by_level, self.cfg.dead_code_min_count, generator, usage)
