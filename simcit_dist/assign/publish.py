"""Versioned, atomic, idempotent publishing of SID tables.

A version's files are written under ``versions/<version>/`` first; ``manifest.json`` is written
last (a version without it is incomplete and invisible to readers), and only then the small
``LATEST`` pointer object is replaced (a single PUT on S3, a rename locally). A run killed at
any point leaves the previous version readable and ``LATEST`` unchanged.

Version names are ``v<seq>-<digest>``: ``seq`` counts versions (retirement quarantine is
measured in it) and ``digest`` hashes the inputs (catalog file listing, tokenizer hash,
previous version, settings). Re-running the same inputs yields the same name; a complete
version of that name is not written again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from typing import Any

from simcit_dist.data.parquet_io import parquet_files
from simcit_dist.sids.manifest import SidManifest, read_manifest, write_manifest
from simcit_dist.sids.table import LATEST, MANIFEST, SIDTableError, resolve_version, version_dir
from simcit_dist.storage import (
    Location,
    delete_dir,
    exists,
    list_files,
    read_text,
    write_text,
)

log = logging.getLogger(__name__)


def input_digest(catalog: Location, tokenizer_hash: str, previous: str | None, settings: dict[str, Any]) -> str:
    """Hash of what determines a version's content. The catalog enters by its file listing
    (relative path and size of every Parquet file), which changes whenever a snapshot does."""
    listing = []
    for f in parquet_files(catalog):
        info = f.fs.get_file_info(f.path)
        listing.append((posixpath.relpath(f.path, catalog.path), info.size))
    payload = json.dumps({"catalog": listing, "tokenizer": tokenizer_hash, "previous": previous,
                          "settings": settings}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def version_name(seq: int, digest: str) -> str:
    return f"v{seq:05d}-{digest[:12]}"


def version_seq(version: str) -> int:
    try:
        return int(version.split("-", 1)[0].lstrip("v"))
    except ValueError as e:
        raise SIDTableError(f"{version!r} is not a version name (v<seq>-<digest>)") from e


def find_by_digest(root: Location, digest: str) -> str | None:
    """A complete version already published from the same inputs (idempotent re-runs)."""
    matches = [v for v in published_versions(root) if v.endswith("-" + digest[:12])]
    return matches[-1] if matches else None


def latest_version(root: Location) -> str | None:
    pointer = root.child(LATEST)
    return read_text(pointer).strip() if exists(pointer) else None


def published_versions(root: Location) -> list[str]:
    """Complete versions (those with a manifest), oldest first."""
    versions = root.child("versions")
    names = {posixpath.basename(posixpath.dirname(f.path)) for f in list_files(versions, suffix="/" + MANIFEST)
             if posixpath.dirname(posixpath.dirname(f.path)) == versions.path}
    return sorted(names, key=version_seq)


def complete_manifest(root: Location, version: str) -> SidManifest | None:
    """The manifest of ``version`` if it is completely published, else None."""
    loc = version_dir(root, version).child(MANIFEST)
    if not exists(loc):
        return None
    try:
        return read_manifest(loc)
    except SIDTableError:
        return None


def clear_incomplete(root: Location, version: str) -> None:
    """Remove leftovers of a killed run of ``version`` (never a complete version)."""
    vdir = version_dir(root, version)
    if complete_manifest(root, version) is None and list_files(vdir):
        log.warning("removing incomplete leftovers of %s", vdir.uri)
        delete_dir(vdir)


def publish(root: Location, manifest: SidManifest) -> None:
    """Make ``manifest.version`` visible: manifest last inside the version, then the LATEST pointer."""
    version = manifest.version
    write_manifest(version_dir(root, version).child(MANIFEST), manifest)
    resolve_version(root, version=version)  # read back before pointing readers at it
    write_text(root.child(LATEST), version + "\n")
    log.info("published %s (LATEST -> %s)", version_dir(root, version).uri, version)
