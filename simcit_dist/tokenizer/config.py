"""Typed configs of the three tokenizers (SimCIT, RQ-VAE, RQ-KMeans) and the section that picks one.

Plain dataclasses so :mod:`simcit_dist.config_loader` can build them from YAML; every cross-field
rule is checked in ``__post_init__`` with a ``ValueError`` naming the field and what is allowed.
Defaults follow the SimCIT paper (arXiv 2506.16683) and TIGER's RQ-VAE; the AL-GR preset only
raises ``codebook_size`` to 8192.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Activation = Literal["silu", "relu", "gelu"]


def _check_dims(name: str, dims: list[int]) -> None:
    if any(d < 1 for d in dims):
        raise ValueError(f"{name} must be positive layer widths, got {dims}")


def _check_codebook(num_levels: int, codebook_size: int) -> None:
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    if codebook_size < 2:
        raise ValueError(f"codebook_size must be >= 2 (codewords per level), got {codebook_size}")


@dataclass
class TemperatureSchedule:
    """Gumbel-softmax temperature: ``start`` annealed to ``floor`` over ``anneal_steps`` steps.

    ``anneal_steps = 0`` anneals over the whole run (``total_steps``); after the horizon the
    temperature stays at ``floor``. ``start == floor`` is a fixed temperature.
    """

    start: float = 0.2
    floor: float = 0.02
    kind: Literal["linear", "exponential", "cosine"] = "exponential"
    anneal_steps: int = 0

    def __post_init__(self) -> None:
        if not self.start > 0 or not self.floor > 0:
            raise ValueError(f"temperature start and floor must be > 0, got start={self.start}, floor={self.floor}")
        if self.floor > self.start:
            raise ValueError(f"temperature floor ({self.floor}) must be <= start ({self.start})")
        if self.anneal_steps < 0:
            raise ValueError(f"temperature anneal_steps must be >= 0 (0 = whole run), got {self.anneal_steps}")


@dataclass
class SimCITConfig:
    """SimCIT: per-modality MLP encoders, attention fusion, soft residual quantisation, NT-Xent."""

    hidden_dims: list[int] = field(default_factory=lambda: [512, 256, 128])
    latent_dim: int = 96
    activation: Activation = "silu"
    dropout: float = 0.0
    normalize_latent: bool = True  # L2-normalise the fused latent (see SimCIT.fuse)
    input_norm: Literal["layernorm", "none"] = "layernorm"  # standardise each modality's input vector
    num_levels: int = 3
    codebook_size: int = 256
    shared_codebook: bool = False  # one codebook for every level instead of one per level
    codebook_init: Literal["kmeans", "normal"] = "kmeans"  # k-means on the first batch's residuals
    center_init: bool = True  # first batch: shift the encoders' output biases so its latents average 0
    kmeans_iters: int = 10
    proj_dim: int = 96
    projection: Literal["linear", "mlp"] = "linear"  # heads g (reconstruction) and h_m (views)
    temperature: TemperatureSchedule = field(default_factory=TemperatureSchedule)
    gumbel_scale: float = 0.1  # Gumbel noise scale on the -distance logits; 0 = plain softmax
    tau: float = 0.1  # NT-Xent temperature
    symmetric: bool = True  # also views -> reconstruction
    use_pair_view: bool = True  # co-occurring partner as an extra view where the batch has one
    pair_weight: float = 1.0
    commitment_weight: float = 0.0  # quantisation-error regulariser, off by default
    codeword_weight: float = 0.0  # mean pairwise cosine of codewords, off by default
    dead_code_reset: bool = False
    dead_code_every: int = 200  # steps between resets (the training loop calls reset_dead_codes)
    dead_code_min_count: int = 1  # a code used fewer times since the last reset is dead
    seed: int = 0  # codebook init and dead-code reset

    def __post_init__(self) -> None:
        _check_dims("simcit.hidden_dims", self.hidden_dims)
        _check_codebook(self.num_levels, self.codebook_size)
        if self.latent_dim < 1 or self.proj_dim < 1:
            raise ValueError(f"latent_dim and proj_dim must be >= 1, got {self.latent_dim}, {self.proj_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.tau > 0:
            raise ValueError(f"tau (NT-Xent temperature) must be > 0, got {self.tau}")
        if self.kmeans_iters < 1:
            raise ValueError(f"kmeans_iters must be >= 1, got {self.kmeans_iters}")
        for name in ("pair_weight", "commitment_weight", "codeword_weight", "gumbel_scale"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.dead_code_every < 1 or self.dead_code_min_count < 1:
            raise ValueError("dead_code_every and dead_code_min_count must be >= 1")


@dataclass
class RQVAEConfig:
    """TIGER's RQ-VAE over the concatenated modalities (sorted column order)."""

    hidden_dims: list[int] = field(default_factory=lambda: [512, 256, 128])
    latent_dim: int = 32
    activation: Activation = "relu"
    dropout: float = 0.0
    num_levels: int = 3
    codebook_size: int = 256
    shared_codebook: bool = False
    beta: float = 0.25  # commitment weight of the VQ loss
    kmeans_init: bool = True  # k-means on the first batch's residuals (else N(0, 1) codewords)
    kmeans_iters: int = 10
    dead_code_reset: bool = False
    dead_code_every: int = 200
    dead_code_min_count: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        _check_dims("rqvae.hidden_dims", self.hidden_dims)
        _check_codebook(self.num_levels, self.codebook_size)
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.kmeans_iters < 1:
            raise ValueError(f"kmeans_iters must be >= 1, got {self.kmeans_iters}")
        if self.dead_code_every < 1 or self.dead_code_min_count < 1:
            raise ValueError("dead_code_every and dead_code_min_count must be >= 1")


@dataclass
class RQKMeansConfig:
    """Residual k-means per level on the concatenated modalities, fitted on a sample."""

    num_levels: int = 3
    codebook_size: int = 256
    iters: int = 20
    # auto: k-means++ up to 1,024 codes, random rows above (k-means++ is sequential in k)
    init: Literal["auto", "kmeans++", "random"] = "auto"
    minibatch_size: int = 0  # 0: full-batch Lloyd on the sample; > 0: mini-batch k-means
    # Lloyd in faiss (auto: when installed, on CPU, full batch) or in torch (the reference kernels)
    backend: Literal["auto", "torch", "faiss"] = "auto"
    normalize: bool = False  # L2-normalise each modality before concatenating
    max_sample: int = 1_000_000  # items of the sample kept for fitting (the rest is ignored)
    seed: int = 0

    def __post_init__(self) -> None:
        _check_codebook(self.num_levels, self.codebook_size)
        if self.iters < 1:
            raise ValueError(f"iters must be >= 1, got {self.iters}")
        if self.minibatch_size < 0:
            raise ValueError(f"minibatch_size must be >= 0 (0 = full batch), got {self.minibatch_size}")
        if self.max_sample < self.codebook_size:
            raise ValueError(f"max_sample ({self.max_sample}) must be >= codebook_size ({self.codebook_size})")


@dataclass
class TokenizerConfig:
    """Which tokenizer to build, and each one's section (only the chosen one is used)."""

    kind: Literal["simcit", "rqvae", "rqkmeans"] = "simcit"
    simcit: SimCITConfig = field(default_factory=SimCITConfig)
    rqvae: RQVAEConfig = field(default_factory=RQVAEConfig)
    rqkmeans: RQKMeansConfig = field(default_factory=RQKMeansConfig)

    def __post_init__(self) -> None:
        if self.kind not in ("simcit", "rqvae", "rqkmeans"):
            raise ValueError(f"kind must be one of ['simcit', 'rqvae', 'rqkmeans'], got {self.kind!r}")

    @property
    def num_levels(self) -> int:
        return int(getattr(self, self.kind).num_levels)

    @property
    def codebook_size(self) -> int:
        return int(getattr(self, self.kind).codebook_size)
