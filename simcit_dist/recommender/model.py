"""TIGER-style encoder-decoder transformer over SID tokens.

The encoder reads the flattened SIDs of a user's history (``H`` items x ``D`` tokens, left
padded so the most recent item always sits at the end); the decoder reads ``[BOS, t_1 .. t_{D-1}]``
and predicts the next item's ``D`` SID tokens. Position ``d`` of a SID can only hold a
level-``d`` token, so each position has its own output layer over that level's codes (a
softmax over ``level_sizes[d]`` codes), both in training and in beam search.

Attention is T5-style (``num_heads * head_dim`` need not equal ``d_model``; TIGER uses
d_model 128 with 6 heads of 64), pre-norm, with learned absolute positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from simcit_dist.recommender.catalog import BOS, PAD, SidLayout
from simcit_dist.recommender.config import ModelConfig


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        inner = cfg.num_heads * cfg.head_dim
        self.heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.q = nn.Linear(cfg.d_model, inner, bias=False)
        self.kv = nn.Linear(cfg.d_model, 2 * inner, bias=False)
        self.out = nn.Linear(inner, cfg.d_model, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, context: torch.Tensor, key_mask: torch.Tensor | None = None,
                causal: bool = False) -> torch.Tensor:
        """x: (B, T, d) queries; context: (B, S, d) keys/values; key_mask: (B, S) True = attend."""
        b, t, _ = x.shape
        s = context.shape[1]
        q = self.q(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)  # (B, h, T, hd)
        k, v = self.kv(context).view(b, s, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, h, S, hd)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, S)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Sequential):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(nn.Linear(cfg.d_model, cfg.ffn_dim), nn.ReLU(), nn.Dropout(cfg.dropout),
                         nn.Linear(cfg.ffn_dim, cfg.d_model))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn, self.ffn = Attention(cfg), FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, key_mask))
        return x + self.drop(self.ffn(self.norm2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(cfg.d_model) for _ in range(3))
        self.self_attn, self.cross_attn, self.ffn = Attention(cfg), Attention(cfg), FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.self_attn(h, h, causal=True))
        x = x + self.drop(self.cross_attn(self.norm2(x), memory, memory_mask))
        return x + self.drop(self.ffn(self.norm3(x)))


class TigerModel(nn.Module):
    """Encoder-decoder over SID tokens; ``forward`` gives the training loss."""

    def __init__(self, cfg: ModelConfig, layout: SidLayout, max_history: int) -> None:
        super().__init__()
        self.cfg, self.layout, self.max_history = cfg, layout, max_history
        d = cfg.d_model
        self.embed = nn.Embedding(layout.vocab_size, d, padding_idx=PAD)
        self.enc_pos = nn.Embedding(max_history * layout.depth, d)
        self.dec_pos = nn.Embedding(layout.depth, d)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_decoder_layers))
        self.enc_norm, self.dec_norm = nn.LayerNorm(d), nn.LayerNorm(d)
        # One output layer per SID position: position d only ever holds a level-d code.
        self.outputs = nn.ModuleList(nn.Linear(d, size) for size in layout.level_sizes)
        self.drop = nn.Dropout(cfg.dropout)
        self.apply(self._init)

    def _init(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.cfg.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src: (B, S) history tokens, left-padded with PAD -> memory (B, S, d), key mask (B, S)."""
        key_mask = src != PAD
        s = src.shape[1]
        # Right-align positions: the last history token always gets the last position embedding.
        pos = torch.arange(self.enc_pos.num_embeddings - s, self.enc_pos.num_embeddings, device=src.device)
        x = self.drop(self.embed(src) + self.enc_pos(pos))
        for layer in self.encoder:
            x = layer(x, key_mask)
        return self.enc_norm(x), key_mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """tgt_in: (N, T) decoder tokens starting with BOS -> hidden states (N, T, d)."""
        pos = torch.arange(tgt_in.shape[1], device=tgt_in.device)
        x = self.drop(self.embed(tgt_in) + self.dec_pos(pos))
        for layer in self.decoder:
            x = layer(x, memory, memory_mask)
        return self.dec_norm(x)

    def level_logits(self, hidden: torch.Tensor, depth: int) -> torch.Tensor:
        """hidden: (..., d) at SID position ``depth`` -> (..., level_sizes[depth]) logits over its codes."""
        return self.outputs[depth](hidden)

    def next_logprobs(self, tgt_in: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """Beam-search step: (N, t) decoder tokens -> (N, level_sizes[t - 1]) log-probs of the next code."""
        depth = tgt_in.shape[1] - 1
        hidden = self.decode(tgt_in, memory, memory_mask)[:, -1]
        return F.log_softmax(self.level_logits(hidden, depth).float(), dim=-1)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, tgt_codes: torch.Tensor) -> torch.Tensor:
        """Mean per-position cross-entropy. src: (B, S); tgt_in: (B, D); tgt_codes: (B, D) local codes."""
        memory, mask = self.encode(src)
        hidden = self.decode(tgt_in, memory, mask)  # (B, D, d)
        losses = [F.cross_entropy(self.level_logits(hidden[:, d], d).float(), tgt_codes[:, d])
                  for d in range(self.layout.depth)]
        return torch.stack(losses).mean()


def decoder_inputs(target_tokens: torch.Tensor) -> torch.Tensor:
    """(B, D) target token ids -> (B, D) teacher-forcing decoder input ``[BOS, t_1 .. t_{D-1}]``."""
    bos = torch.full_like(target_tokens[:, :1], BOS)
    return torch.cat([bos, target_tokens[:, :-1]], dim=1)
