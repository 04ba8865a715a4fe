"""The published SID table: layout, schema, and how readers find the current version.

Layout under an SID root (local or ``s3://``)::

    <root>/LATEST                         one line: the current version name
    <root>/versions/<version>/manifest.json
    <root>/versions/<version>/sids/part-*.parquet   item_id, c1..cL, suffix, sid

``manifest.json`` is a :class:`~simcit_dist.sids.manifest.SidManifest` (levels, codebook sizes,
the largest suffix used, provenance, counts and metrics). Readers always go through
:func:`resolve_version`, so a version is only visible once its manifest and ``LATEST`` exist.

Stable contracts (other teams' code may read them): ``LATEST``, ``manifest.json`` and the
``sids/`` Parquet schema below. Everything else under a run directory is internal.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from simcit_dist.data.parquet_io import read_table
from simcit_dist.sids.manifest import SidManifest, SIDTableError, read_manifest
from simcit_dist.storage import Location, StorageConfig, exists, read_text, resolve

LATEST = "LATEST"
MANIFEST = "manifest.json"

__all__ = ["LATEST", "MANIFEST", "SIDTableError", "SidManifest", "code_columns", "read_sid_table",
           "resolve_version", "sid_schema", "sid_strings", "version_dir"]


def code_columns(num_levels: int) -> list[str]:
    return [f"c{i + 1}" for i in range(num_levels)]


def sid_schema(num_levels: int) -> pa.Schema:
    return pa.schema(
        [pa.field("item_id", pa.int64(), nullable=False)]
        + [pa.field(c, pa.int32(), nullable=False) for c in code_columns(num_levels)]
        + [pa.field("suffix", pa.int32(), nullable=False), pa.field("sid", pa.string(), nullable=False)]
    )


def sid_strings(codes: np.ndarray, suffix: np.ndarray) -> pa.Array:
    """Human-readable SIDs: ``"12-200-7/0"`` (levels joined by '-', then '/' and the suffix)."""
    parts = [codes[:, i].astype(str) for i in range(codes.shape[1])]
    joined = parts[0]
    for p in parts[1:]:
        joined = np.char.add(np.char.add(joined, "-"), p)
    return pa.array(np.char.add(np.char.add(joined, "/"), suffix.astype(str)).tolist(), pa.string())


def version_dir(root: Location, version: str) -> Location:
    return root.child("versions", version)


def resolve_version(root_uri: str | Location, storage: StorageConfig | None = None,
                    version: str | None = None) -> tuple[Location, SidManifest]:
    """(version directory, manifest) of ``version``, or of the one ``LATEST`` points at."""
    root = root_uri if isinstance(root_uri, Location) else resolve(root_uri, storage)
    if version is None:
        pointer = root.child(LATEST)
        if not exists(pointer):
            raise SIDTableError(f"{root.uri}: no published SID version (no {LATEST} pointer)")
        version = read_text(pointer).strip()
        if not version:
            raise SIDTableError(f"{pointer.uri}: empty pointer")
    vdir = version_dir(root, version)
    manifest_loc = vdir.child(MANIFEST)
    if not exists(manifest_loc):
        raise SIDTableError(f"{root.uri}: version {version!r} does not exist or is incomplete (no {MANIFEST})")
    manifest = read_manifest(manifest_loc)
    if manifest.version != version:
        raise SIDTableError(f"{manifest_loc.uri}: manifest names version {manifest.version!r}, not {version!r}")
    return vdir, manifest


def read_sid_table(root_uri: str | Location, storage: StorageConfig | None = None,
                   version: str | None = None) -> tuple[pa.Table, SidManifest]:
    """Load a published SID table whole (for bounded uses: a recommender's vocabulary/trie).

    Catalog-scale consumers should stream ``<version>/sids`` with Ray Data instead.
    """
    vdir, manifest = resolve_version(root_uri, storage, version)
    table = read_table(vdir.child("sids"))
    expected = ["item_id", *code_columns(manifest.num_levels), "suffix"]
    missing = [c for c in expected if c not in table.column_names]
    if missing:
        raise SIDTableError(f"{vdir.uri}/sids: missing columns {missing}")
    return table, manifest
