"""The one tokenizer interface the assignment job, benchmarks and metrics use, and its factory.

All three tokenizers are ``nn.Module``s (``.to(device)``, ``state_dict``) with:

- ``encode(batch) -> (B, L) int64`` hard codes (eval mode, no grad);
- ``encode_with_distance(batch) -> (codes, dist (B,) float32)``: dist is the squared distance
  between the item's latent and its full quantised reconstruction (collision resolution orders
  items sharing a SID by it);
- ``latent(batch) -> (B, D)``: the vector that is quantised;
- ``codebooks() -> (L, K, D)``.

Training differs by kind: SimCIT and RQ-VAE are gradient-trained through
``training_loss(batch, step, total_steps, gather)`` (also their ``forward``, for DDP); RQ-KMeans
is fitted once with ``fit(sample_batches)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from simcit_dist.tokenizer.config import TokenizerConfig
from simcit_dist.tokenizer.inputs import Batch
from simcit_dist.tokenizer.losses import Gather
from simcit_dist.tokenizer.rqkmeans import RQKMeans
from simcit_dist.tokenizer.rqvae import RQVAE
from simcit_dist.tokenizer.simcit import SimCIT


@runtime_checkable
class Tokenizer(Protocol):
    num_levels: int
    codebook_size: int

    def encode(self, batch: Batch) -> Tensor: ...

    def encode_with_distance(self, batch: Batch) -> tuple[Tensor, Tensor]: ...

    def latent(self, batch: Batch) -> Tensor: ...

    def codebooks(self) -> Tensor: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> Any: ...

    def to(self, device: torch.device | str) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...


@runtime_checkable
class TrainableTokenizer(Tokenizer, Protocol):
    """Gradient-trained tokenizers (SimCIT, RQ-VAE)."""

    def training_loss(self, batch: Batch, step: int, total_steps: int,
                      gather: Gather | None = None) -> tuple[Tensor, dict[str, float]]: ...

    def parameters(self) -> Iterator[nn.Parameter]: ...

    def init_codebooks(self, batch: Batch) -> None: ...

    def residuals(self, batch: Batch) -> list[Tensor]: ...

    def reset_dead_codes(self, residuals_by_level: Sequence[Tensor], generator: torch.Generator,
                         usage: Tensor | None = None) -> Tensor: ...


@runtime_checkable
class FittableTokenizer(Tokenizer, Protocol):
    """Tokenizers fitted once on a sample (RQ-KMeans)."""

    def fit(self, sample_batches: Iterable[Batch]) -> dict[str, float]: ...


def build_tokenizer(cfg: TokenizerConfig, input_dims: Mapping[str, int]) -> Tokenizer:
    """A fresh tokenizer of ``cfg.kind`` for modality columns ``input_dims`` (column -> dim).

    Every tokenizer is an ``nn.Module``; SimCIT and RQ-VAE are also :class:`TrainableTokenizer`
    (use :func:`as_module` to wrap one in DDP), RQ-KMeans a :class:`FittableTokenizer`.
    """
    if not input_dims:
        raise ValueError("input_dims must name at least one modality column")
    if cfg.kind == "simcit":
        return SimCIT(cfg.simcit, input_dims)
    if cfg.kind == "rqvae":
        return RQVAE(cfg.rqvae, input_dims)
    if cfg.kind == "rqkmeans":
        return RQKMeans(cfg.rqkmeans, input_dims)
    raise ValueError(f"tokenizer kind must be one of ['simcit', 'rqvae', 'rqkmeans'], got {cfg.kind!r}")


def is_trainable(tokenizer: object) -> bool:
    return callable(getattr(tokenizer, "training_loss", None))


def as_module(tokenizer: Tokenizer) -> nn.Module:
    """The tokenizer as the ``nn.Module`` it is (for DDP, optimisers, ``.to``)."""
    if not isinstance(tokenizer, nn.Module):
        raise TypeError(f"expected an nn.Module tokenizer, got {type(tokenizer).__name__}")
    return tokenizer
