"""SASRec (Kang & McAuley, 2018) with full softmax cross-entropy, as RecBole implements it.

Item ``i`` of the catalog is token ``i + 1`` (0 pads). A sequence is *left-aligned*: its items sit
at positions ``0..n-1`` and padding follows, so under the causal mask a real position never sees
padding, and the output at position ``t`` is the user state after ``t + 1`` items. The score of
every catalog item is the dot product of that state with the item's input embedding (tied, as in
RecBole); the loss is the cross-entropy of the next item over the whole catalog.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from simcit_dist.recommender.sasrec.config import SasrecModelConfig

PAD_ITEM = 0


class SasrecModel(nn.Module):
    def __init__(self, cfg: SasrecModelConfig, num_items: int, max_len: int) -> None:
        super().__init__()
        self.num_items, self.max_len = num_items, max_len
        d = cfg.hidden_dim
        self.item_embed = nn.Embedding(num_items + 1, d, padding_idx=PAD_ITEM)
        self.pos_embed = nn.Embedding(max_len, d)
        self.norm = nn.LayerNorm(d, eps=1e-12)
        self.dropout = nn.Dropout(cfg.dropout)
        # Post-norm blocks with GELU, as in RecBole's TransformerEncoder.
        layer = nn.TransformerEncoderLayer(d, cfg.num_heads, cfg.ffn_dim, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=False, layer_norm_eps=1e-12)
        self.blocks = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        self.apply(lambda m: _init(m, cfg.init_std))

    def states(self, items: torch.Tensor) -> torch.Tensor:
        """(B, T) item tokens, left-aligned, 0 = padding -> (B, T, d) user state after each position."""
        t = items.shape[1]
        if t > self.max_len:
            raise ValueError(f"a sequence of {t} items is longer than the model's {self.max_len} positions")
        x = self.item_embed(items) + self.pos_embed(torch.arange(t, device=items.device))
        x = self.dropout(self.norm(x))
        causal = nn.Transformer.generate_square_subsequent_mask(t, device=items.device, dtype=x.dtype)
        return self.blocks(x, mask=causal, is_causal=True)

    def scores(self, states: torch.Tensor) -> torch.Tensor:
        """(N, d) states -> (N, num_items) scores of every catalog item (item index order)."""
        return states @ self.item_embed.weight[1:].T

    def forward(self, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the next item over the whole catalog.

        items: (B, T) tokens; targets: (B, T) item *indices* of the next item, -1 where no loss.
        Only positions with a target are scored: the (targets x catalog) product is the cost.
        """
        h = self.states(items)  # (B, T, d)
        keep = targets >= 0
        return F.cross_entropy(self.scores(h[keep]), targets[keep])

    def last_states(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T) tokens, (B,) number of real items (>= 1) -> (B, d) state after the last item."""
        h = self.states(items)
        return h[torch.arange(len(items), device=items.device), (lengths - 1).clamp(min=0)]


def _init(module: nn.Module, std: float) -> None:
    # RecBole: normal(0, initializer_range) for linear and embedding weights, zero biases, unit norms.
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.MultiheadAttention):  # its q/k/v projection is one fused parameter
        nn.init.normal_(module.in_proj_weight, std=std)
        nn.init.zeros_(module.in_proj_bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
