"""Residual quantisation over L levels of K codewords in a D-dim latent space.

One module serves all three tokenizers:

- :meth:`ResidualQuantizer.soft_quantize` (SimCIT): at each level the residual r is assigned to
  the codewords with Gumbel-softmax weights over negative squared distances, the quantised
  vector is the weighted sum w @ C, and r - w @ C goes on to the next level;
- :meth:`ResidualQuantizer.ste_quantize` (RQ-VAE): hard nearest codeword per level, VQ loss,
  straight-through gradient to the encoder;
- :meth:`ResidualQuantizer.encode` (inference for all): hard argmin per level.

Codebooks are one tensor (L_books, K, D) with ``L_books = 1`` when shared across levels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from simcit_dist.tokenizer import kmeans as km

log = logging.getLogger(__name__)


@dataclass
class SoftQuantized:
    z_hat: Tensor  # (B, D) sum of the per-level soft quantised vectors
    codes: Tensor  # (B, L) int64 hard argmin of each level's residual (for metrics)
    residual: Tensor  # (B, D) what is left after the last level: z - z_hat


class ResidualQuantizer(nn.Module):
    codebooks: Tensor  # (L_books, K, D): a Parameter when trainable, else a buffer
    initialized: Tensor  # () bool

    def __init__(self, num_levels: int, codebook_size: int, dim: int, shared: bool = False,
                 trainable: bool = True) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.codebook_size = codebook_size
        self.dim = dim
        self.shared = shared
        books = torch.randn(1 if shared else num_levels, codebook_size, dim) / dim**0.5
        if trainable:
            self.codebooks = nn.Parameter(books)
        else:
            self.register_buffer("codebooks", books)
        # Persistent so a loaded artifact is not re-initialised from its first batch.
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        # Code usage since the last dead-code reset, (L_books, K). A plain attribute, not a buffer:
        # DDP broadcasts buffers from rank 0 every forward, which would overwrite local counts.
        self._usage: Tensor | None = None

    def codebook(self, level: int) -> Tensor:
        return self.codebooks[0 if self.shared else level]  # (K, D)

    def stacked(self) -> Tensor:
        """(L, K, D) codebook of every level (the shared one repeated)."""
        return self.codebooks.expand(self.num_levels, -1, -1) if self.shared else self.codebooks

    # ---- inference -------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Hard residual assignment: (codes int64 (B, L), reconstruction sum_l C_l[c_l] (B, D))."""
        r = z.detach()
        codes = []
        for level in range(self.num_levels):
            c = self.codebook(level)
            idx, _ = km.nearest(r, c)
            codes.append(idx)
            r = r - c[idx]
        z_hat = z.detach() - r
        return torch.stack(codes, dim=1), z_hat

    @torch.no_grad()
    def residuals(self, z: Tensor) -> list[Tensor]:
        """The hard path's input to each level: [z, z - C_0[c_0], ...], L tensors of (B, D)."""
        r = z.detach()
        out = []
        for level in range(self.num_levels):
            out.append(r)
            c = self.codebook(level)
            r = r - c[km.nearest(r, c)[0]]
        return out

    # ---- training paths --------------------------------------------------------------------
    def soft_quantize(self, z: Tensor, temperature: float, gumbel_scale: float = 1.0,
                      generator: torch.Generator | None = None) -> SoftQuantized:
        """Differentiable soft residual quantisation (SimCIT, eq. 4-5).

        softmax(-||r - c_k||^2 / t) equals softmax((2 r.c_k - ||c_k||^2) / t): ||r||^2 is the same
        for every k, so it is never computed. Gumbel noise is added to the logits before dividing
        by t (the Gumbel-softmax of Jang et al.); as t -> 0 without noise this is the argmin.
        """
        r = z
        z_hat = torch.zeros_like(z)
        codes = []
        for level in range(self.num_levels):
            c = self.codebook(level)  # (K, D)
            logits = torch.addmm(-c.pow(2).sum(1).unsqueeze(0), r, c.t(), alpha=2.0)  # (B, K)
            codes.append(logits.detach().argmax(dim=1))
            if gumbel_scale > 0:
                noise = torch.empty_like(logits).exponential_(generator=generator).log_().neg_()  # Gumbel(0, 1)
                logits = logits + gumbel_scale * noise
            w = torch.softmax(logits / temperature, dim=1)  # (B, K)
            q = w @ c  # (B, D)
            z_hat = z_hat + q
            r = r - q
        return SoftQuantized(z_hat=z_hat, codes=torch.stack(codes, dim=1), residual=r)

    def ste_quantize(self, z: Tensor, beta: float) -> tuple[Tensor, Tensor, Tensor]:
        """Hard VQ with a straight-through estimator (RQ-VAE / TIGER).

        Returns (z_q (B, D) whose gradient passes to z unchanged, codes (B, L), vq loss) with the
        loss sum_l ||sg(r_l) - e_l||^2 + beta ||r_l - sg(e_l)||^2 (mean over elements).
        """
        r = z
        loss = z.new_zeros(())
        codes = []
        for level in range(self.num_levels):
            c = self.codebook(level)
            idx, _ = km.nearest(r.detach(), c)
            e = c[idx]  # (B, D), gradient to the codebook only
            loss = loss + (r.detach() - e).pow(2).mean() + beta * (r - e.detach()).pow(2).mean()
            codes.append(idx)
            r = r - e.detach()
        z_hat = (z - r).detach()  # (B, D) sum_l e_l
        z_q = z + (z_hat - z).detach()  # value z_hat, gradient identity to z
        return z_q, torch.stack(codes, dim=1), loss

    # ---- initialisation and health ---------------------------------------------------------
    @torch.no_grad()
    def init_kmeans(self, z: Tensor, iters: int, generator: torch.Generator) -> None:
        """Codebooks from residual k-means on ``z`` (N, D): level l clusters what levels < l left.

        Deterministic given (z, generator): DDP ranks that pass the same gathered latents and
        seed get identical codebooks, with no broadcast needed. The torch kernels, not faiss: their
        result does not depend on a thread count that may differ between ranks, and a batch of
        latents is small.
        """
        r = z.detach().float()
        for level in range(1 if self.shared else self.num_levels):
            centres = km.kmeans(r, self.codebook_size, iters, generator)
            self.codebooks.data[level] = centres.to(self.codebooks.dtype)
            r = r - centres[km.nearest(r, centres)[0]]
        self.initialized.fill_(True)
        log.info("initialised %d codebook(s) of %d codes by k-means on %d latents",
                 self.codebooks.shape[0], self.codebook_size, z.shape[0])

    @torch.no_grad()
    def mark_initialized(self) -> None:
        self.initialized.fill_(True)

    @torch.no_grad()
    def add_usage(self, codes: Tensor) -> None:
        """Count hard assignments (B, L) towards the dead-code statistics."""
        books, k = self.codebooks.shape[0], self.codebook_size
        if self._usage is None or self._usage.device != codes.device:
            self._usage = torch.zeros(books, k, dtype=torch.long, device=codes.device)
        if self.shared:
            self._usage[0] += torch.bincount(codes.flatten(), minlength=k)
        else:
            offsets = torch.arange(self.num_levels, device=codes.device) * k
            self._usage += torch.bincount((codes + offsets).flatten(), minlength=books * k).view(books, k)

    @property
    def usage(self) -> Tensor:
        """(L_books, K) int64 code counts since the last reset (all-reduce it across DDP ranks)."""
        if self._usage is None:
            return torch.zeros(self.codebooks.shape[0], self.codebook_size, dtype=torch.long)
        return self._usage

    @torch.no_grad()
    def reset_dead_codes(self, residuals_by_level: Sequence[Tensor], min_count: int,
                         generator: torch.Generator, usage: Tensor | None = None) -> Tensor:
        """Move codewords used fewer than ``min_count`` times onto random residuals of their level.

        ``residuals_by_level[l]`` is (N_l, D), the residuals entering level l (see
        :meth:`residuals`); a shared codebook draws from all levels pooled. ``usage`` defaults to
        the counts accumulated since the last reset. Returns the (L_books, K) bool mask of reset
        codewords and zeroes the counts.

        For DDP: all-reduce ``usage`` and gather the residuals first, then every rank computes
        the same result from the same generator seed; or reset on rank 0 and broadcast
        ``codebooks`` afterwards. Either way the codebooks stay identical across ranks.
        """
        counts = (self.usage if usage is None else usage).to(self.codebooks.device)
        dead = counts < min_count  # (L_books, K)
        pools = [torch.cat(list(residuals_by_level))] if self.shared else list(residuals_by_level)
        for level, pool in enumerate(pools):
            idx = torch.nonzero(dead[level]).flatten()
            if idx.numel() == 0 or pool.shape[0] == 0:
                continue
            rows = torch.randint(0, pool.shape[0], (idx.numel(),), generator=generator).to(pool.device)
            self.codebooks.data[level, idx.to(self.codebooks.device)] = pool[rows].to(self.codebooks)
        if self._usage is not None:
            self._usage.zero_()
        n_dead = int(dead.sum())
        if n_dead:
            log.info("reset %d dead codewords", n_dead)
        return dead

    def codeword_similarity(self) -> Tensor:
        """Mean pairwise cosine similarity between distinct codewords of each codebook (a scalar).

        A regulariser that pushes codewords apart in angle (SimCIT's codeword term, without the
        constant diagonal the reference code includes).
        """
        c = nn.functional.normalize(self.codebooks, dim=-1)  # (L_books, K, D)
        gram = c @ c.transpose(1, 2)  # (L_books, K, K)
        k = self.codebook_size
        return (gram.sum(dim=(1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(-1)).mean() / (k * (k - 1))
