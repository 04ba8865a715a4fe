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

from dataclasses import dataclass, field
from typing import cast

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
        k, v = self.keys_values(context)
        return self.attend(x, k, v, key_mask, causal)

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, d) -> keys, values (B, h, S, hd): what beam search computes once per user."""
        b, s, _ = context.shape
        k, v = self.kv(context).view(b, s, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return k, v

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None = None,
               causal: bool = False) -> torch.Tensor:
        """x: (B, T, d) queries against precomputed k, v (B, h, S, hd) -> (B, T, d)."""
        b, t, _ = x.shape
        q = self.q(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)  # (B, h, T, hd)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, S)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Sequential):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(nn.Linear(cfg.d_model, cfg.ffn_dim), nn.ReLU(), nn.Dropout(cfg.dropout),
                         nn.Linear(cfg.ffn_dim, cfg.d_model))


@dataclass
class DecoderMemory:
    """What beam search keeps during a search: per user, each decoder layer's cross-attention keys and
    values of the encoded history (B, h, S, hd) and its key mask (B, S), computed once; per beam, each
    layer's self-attention keys and values of the positions decoded so far (B, W, h, t, hd), so a step
    runs the decoder on its new position only."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]
    mask: torch.Tensor
    past: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    @property
    def decoded(self) -> int:
        return self.past[0][0].shape[3] if self.past else 0

    def reorder(self, beam: torch.Tensor) -> DecoderMemory:
        """Keep the beams ``beam`` (B, W') picked (rows of the current W), in that order."""
        rows = torch.arange(beam.shape[0], device=beam.device)[:, None]
        return DecoderMemory(self.kv, self.mask, [(k[rows, beam], v[rows, beam]) for k, v in self.past])


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

    def beam_forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None,
                     memory_kv: tuple[torch.Tensor, torch.Tensor], memory_mask: torch.Tensor
                     ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`forward` for the new positions x: (B, W, n, d) of W beams per user, given the
        self-attention keys/values of the c earlier positions (``past``, (B, W, h, c, hd); n = 1 when
        c > 0) and the user's precomputed memory keys/values (B, h, S, hd). The beams are folded into
        the query axis of cross-attention, so the memory is never repeated per beam (cross-attention
        has no mask between queries). Returns the new positions' outputs and the extended ``past``."""
        b, w, n, d = x.shape
        h = self.norm1(x).view(b * w, n, d)
        k, v = self.self_attn.keys_values(h)  # (B*W, heads, n, hd)
        if past is not None:
            if n != 1:
                raise ValueError(f"with cached positions a step decodes one new position, got {n}")
            k = torch.cat([past[0].flatten(0, 1), k], dim=2)
            v = torch.cat([past[1].flatten(0, 1), v], dim=2)
        x = x + self.drop(self.self_attn.attend(h, k, v, causal=past is None)).view(b, w, n, d)
        q = self.norm2(x).view(b, w * n, d)
        x = x + self.drop(self.cross_attn.attend(q, *memory_kv, memory_mask)).view(b, w, n, d)
        return x + self.drop(self.ffn(self.norm3(x))), (k.unflatten(0, (b, w)), v.unflatten(0, (b, w)))


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

    @property
    def decoder_layers(self) -> list[DecoderLayer]:
        return [cast(DecoderLayer, layer) for layer in self.decoder]

    def decoder_memory(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> DecoderMemory:
        """Every decoder layer's cross-attention keys/values of ``memory`` (B, S, d), computed once for a search."""
        return DecoderMemory([layer.cross_attn.keys_values(memory) for layer in self.decoder_layers], memory_mask)

    def beam_logprobs(self, tokens: torch.Tensor, memory: DecoderMemory) -> tuple[torch.Tensor, DecoderMemory]:
        """Beam-search step: (B, W, t) decoder tokens of W beams per user -> (B, W, level_sizes[t - 1])
        log-probs of the next code (equal to :meth:`next_logprobs` on each beam), and ``memory`` with
        the new position cached. Only the positions ``memory`` has not decoded yet are computed."""
        t, done = tokens.shape[2], memory.decoded
        pos = torch.arange(done, t, device=tokens.device)
        x = self.drop(self.embed(tokens[:, :, done:]) + self.dec_pos(pos))  # (B, W, t - done, d)
        past = []
        for i, (layer, kv) in enumerate(zip(self.decoder_layers, memory.kv)):
            x, layer_past = layer.beam_forward(x, memory.past[i] if memory.past else None, kv, memory.mask)
            past.append(layer_past)
        hidden = self.dec_norm(x[:, :, -1])  # (B, W, d)
        logp = F.log_softmax(self.level_logits(hidden, t - 1).float(), dim=-1)
        return logp, DecoderMemory(memory.kv, memory.mask, past)

    def reorder_memory(self, memory: DecoderMemory, beam: torch.Tensor) -> DecoderMemory:
        return memory.reorder(beam)

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
