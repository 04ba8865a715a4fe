"""MLP building blocks shared by the SimCIT encoders/heads and the RQ-VAE encoder/decoder."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU}


def activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]()


def mlp(in_dim: int, hidden_dims: Sequence[int], out_dim: int, act: str = "silu", dropout: float = 0.0) -> nn.Sequential:
    """Linear -> act (-> dropout) per hidden width, then a plain Linear to ``out_dim``.

    The last layer has no activation: the output is a latent (or a reconstruction) whose scale
    the quantiser and the losses set, not a feature map.
    """
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden_dims:
        layers += [nn.Linear(width, h), activation(act)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def projection_head(in_dim: int, out_dim: int, kind: str, act: str = "silu") -> nn.Module:
    """The contrastive heads g / h_m: a Linear, or Linear -> act -> Linear (SimCLR's head)."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, in_dim), activation(act), nn.Linear(in_dim, out_dim))
    raise ValueError(f"projection must be 'linear' or 'mlp', got {kind!r}")
