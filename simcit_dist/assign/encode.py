"""Batch inference of SIDs: a Ray Data actor that loads the tokenizer once and encodes blocks.

Output rows: ``item_id``, ``c1..cL`` (int32), ``dist`` (squared distance of the latent to its
quantised point, the order key among items sharing codes), ``emb_hash`` (fingerprint of the raw
embeddings, to detect changed items the next night) and, for capacity-capped assignment, the
``cand``/``cand_dist`` nearest last-level codewords of the last residual.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from simcit_dist.data.fingerprint import embedding_hash
from simcit_dist.data.schemas import ITEM_ID, arrow_to_embeddings
from simcit_dist.sids.table import code_columns
from simcit_dist.storage import StorageConfig, resolve
from simcit_dist.tokenizer import load_artifact
from simcit_dist.tokenizer.inputs import arrow_to_batch


def encoded_schema(levels: int, candidates: int = 0) -> pa.Schema:
    fields = [pa.field(ITEM_ID, pa.int64())] + [pa.field(c, pa.int32()) for c in code_columns(levels)]
    fields += [pa.field("dist", pa.float32()), pa.field("emb_hash", pa.int64())]
    if candidates:
        fields += [pa.field("cand", pa.list_(pa.int32(), candidates)),
                   pa.field("cand_dist", pa.list_(pa.float32(), candidates))]
    return pa.schema(fields)


def encode_table(tokenizer: Any, table: pa.Table, modalities: Sequence[str], candidates: int = 0,
                 device: str | torch.device = "cpu") -> pa.Table:
    """Encode one Arrow batch of catalog rows (the actor's ``__call__``, callable on its own)."""
    batch = arrow_to_batch(table, modalities, with_partner=False, device=device)
    with torch.no_grad():
        codes, dist = tokenizer.encode_with_distance(batch)
        codes_np = codes.cpu().numpy().astype(np.int32)
        columns: dict[str, Any] = {ITEM_ID: table.column(ITEM_ID)}
        for i, c in enumerate(code_columns(codes_np.shape[1])):
            columns[c] = pa.array(codes_np[:, i], pa.int32())
        columns["dist"] = pa.array(dist.float().cpu().numpy(), pa.float32())
        columns["emb_hash"] = pa.array(embedding_hash([arrow_to_embeddings(table.column(m)) for m in modalities]))
        if candidates:
            cand, cand_dist = last_level_candidates(tokenizer, batch, candidates)
            columns["cand"] = pa.FixedSizeListArray.from_arrays(pa.array(cand.reshape(-1), pa.int32()), candidates)
            columns["cand_dist"] = pa.FixedSizeListArray.from_arrays(pa.array(cand_dist.reshape(-1), pa.float32()),
                                                                     candidates)
    return pa.table(columns)


def last_level_candidates(tokenizer: Any, batch: dict[str, torch.Tensor], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes, squared distances) of the ``k`` nearest last-level codewords of each item's
    last residual, nearest first (the FORGE reassignment's candidates)."""
    quantizer = getattr(tokenizer, "quantizer", None)
    if quantizer is None:
        raise ValueError(f"{type(tokenizer).__name__} has no residual quantizer; collision=capacity needs one")
    residual = quantizer.residuals(tokenizer.latent(batch))[-1]  # (B, D) entering the last level
    book = tokenizer.codebooks()[-1].to(residual.device, residual.dtype)  # (K, D)
    d2 = (residual.pow(2).sum(1, keepdim=True) - 2 * residual @ book.T + book.pow(2).sum(1)[None])  # (B, K)
    k = min(k, book.shape[0])
    dist, idx = torch.topk(d2, k, dim=1, largest=False)
    return idx.cpu().numpy().astype(np.int32), dist.clamp_min(0).float().cpu().numpy()


class EncodeActor:
    """``map_batches(EncodeActor, compute=ActorPoolStrategy(...))``: one tokenizer per actor."""

    def __init__(self, artifact_uri: str, storage: StorageConfig, modalities: Sequence[str],
                 candidates: int = 0, threads: int = 1) -> None:
        torch.set_num_threads(max(1, threads))
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        tokenizer, _, _ = load_artifact(resolve(artifact_uri, storage))
        self.tokenizer = tokenizer.to(self.device).eval()
        self.modalities = list(modalities)
        self.candidates = candidates

    def __call__(self, table: pa.Table) -> pa.Table:
        return encode_table(self.tokenizer, table, self.modalities, self.candidates, self.device)
