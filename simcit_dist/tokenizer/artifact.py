"""A trained tokenizer as a self-contained artifact (local path or ``s3://``).

Layout under the artifact location::

    weights.pt        torch state_dict (loaded with weights_only=True)
    codebooks.npy     (L, K, D) float32, for readers without the model (plots, analysis)
    tokenizer.json    kind, full TokenizerConfig, input_dims, sizes, weights digest, extra

``tokenizer.json`` is written last, so its presence marks a complete artifact. Loading needs
nothing but the location. :func:`artifact_hash` is a digest of what decides the codes (kind,
config, input dims and the tensors' names, dtypes, shapes and bytes), stable across re-saves and
torch versions. The ``extra`` training metadata (steps, final metrics) is left out: re-running a
finished training run rewrites it (restore counts, held-back scores) without changing one code,
and must not make the nightly job publish a new SID version.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from simcit_dist.config_loader import ConfigError, build, to_dict
from simcit_dist.storage import Location, read_bytes, write_bytes
from simcit_dist.tokenizer.base import Tokenizer, build_tokenizer
from simcit_dist.tokenizer.config import TokenizerConfig

FORMAT = "simcit_dist.tokenizer"
FORMAT_VERSION = 1
META_FILE = "tokenizer.json"
WEIGHTS_FILE = "weights.pt"
CODEBOOKS_FILE = "codebooks.npy"


class ArtifactError(ValueError):
    """A tokenizer artifact is missing, incomplete or corrupt; the message names its location."""


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def save_artifact(tokenizer: Tokenizer, cfg: TokenizerConfig, input_dims: Mapping[str, int], loc: Location,
                  extra: dict[str, Any] | None = None) -> str:
    """Write the artifact under ``loc``; returns its :func:`artifact_hash`."""
    state = {k: v.detach().cpu() for k, v in tokenizer.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes(loc.child(WEIGHTS_FILE), buf.getvalue())
    npy = io.BytesIO()
    np.save(npy, tokenizer.codebooks().detach().float().cpu().numpy())
    write_bytes(loc.child(CODEBOOKS_FILE), npy.getvalue())
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": cfg.kind,
        "config": to_dict(cfg),
        "input_dims": {k: int(v) for k, v in sorted(input_dims.items())},
        "num_levels": tokenizer.num_levels,
        "codebook_size": tokenizer.codebook_size,
        "weights_sha256": state_digest(state),
        "extra": extra or {},
    }
    write_bytes(loc.child(META_FILE), json.dumps(meta, indent=2, sort_keys=True).encode())
    return _hash(meta)


def _read_meta(loc: Location) -> dict[str, Any]:
    try:
        raw = read_bytes(loc.child(META_FILE))
    except FileNotFoundError as e:
        raise ArtifactError(f"{loc.uri}: no tokenizer artifact here (missing {META_FILE})") from e
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{loc.uri}/{META_FILE}: corrupt tokenizer metadata (not JSON: {e})") from e
    missing = [k for k in ("format", "kind", "config", "input_dims", "weights_sha256") if k not in meta]
    if not isinstance(meta, dict) or missing or meta.get("format") != FORMAT:
        raise ArtifactError(f"{loc.uri}/{META_FILE}: not a {FORMAT} artifact (missing {missing})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{loc.uri}: artifact format_version {meta.get('format_version')} is not "
                            f"supported (expected {FORMAT_VERSION})")
    return meta


def _read_state(loc: Location, meta: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    try:
        raw = read_bytes(loc.child(WEIGHTS_FILE))
    except FileNotFoundError as e:
        raise ArtifactError(f"{loc.uri}: incomplete tokenizer artifact (missing {WEIGHTS_FILE})") from e
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated/garbled zip files
        raise ArtifactError(f"{loc.uri}/{WEIGHTS_FILE}: corrupt weights ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state_digest(state) != meta["weights_sha256"]:
        raise ArtifactError(f"{loc.uri}/{WEIGHTS_FILE}: weights do not match the digest in {META_FILE} "
                            "(corrupt or overwritten)")
    return state


def load_artifact(loc: Location) -> tuple[Tokenizer, TokenizerConfig, dict[str, Any]]:
    """(tokenizer in eval mode on CPU, its config, the ``extra`` dict saved with it)."""
    meta = _read_meta(loc)
    try:
        cfg = build(TokenizerConfig, meta["config"])
    except ConfigError as e:
        raise ArtifactError(f"{loc.uri}/{META_FILE}: invalid tokenizer config: {e}") from e
    input_dims = {str(k): int(v) for k, v in meta["input_dims"].items()}
    tokenizer = build_tokenizer(cfg, input_dims)
    state = _read_state(loc, meta)
    try:
        tokenizer.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"{loc.uri}: weights do not fit a {cfg.kind} tokenizer built from its config: {e}") from e
    tokenizer.eval()
    return tokenizer, cfg, dict(meta.get("extra") or {})


def _hash(meta: Mapping[str, Any]) -> str:
    # The metadata already carries the weights digest, so hashing it covers the weights too.
    return hashlib.sha256(_canonical_json({k: v for k, v in meta.items() if k != "extra"})).hexdigest()


def artifact_hash(loc: Location) -> str:
    """Stable sha256 of the artifact's content (for manifests); verifies the weights on the way."""
    meta = _read_meta(loc)
    _read_state(loc, meta)
    return _hash(meta)
