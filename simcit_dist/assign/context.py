"""The resolved inputs of one assignment run (``AssignContext``), shared by the driver's stages
and the catalog-quality metrics; built by :func:`prepare_context` before anything is written."""

from __future__ import annotations

from dataclasses import dataclass

from simcit_dist.assign import publish as pub
from simcit_dist.assign.config import AssignJobConfig
from simcit_dist.config_loader import to_dict
from simcit_dist.data.parquet_io import check_files, file_schema
from simcit_dist.data.schemas import check_catalog_schema
from simcit_dist.sids.manifest import SidManifest
from simcit_dist.sids.table import SIDTableError, code_columns, resolve_version
from simcit_dist.storage import Location, resolve
from simcit_dist.tokenizer import artifact_hash, load_artifact


@dataclass
class AssignContext:
    """One assignment run, resolved and checked before any heavy work: inputs, the tokenizer's shape,
    the previous version (nightly mode) and the name of the version this run publishes."""

    cfg: AssignJobConfig
    root: Location
    catalog: Location
    artifact: Location
    modalities: list[str]
    levels: int
    codebook_size: int
    tokenizer_hash: str
    previous: str | None
    previous_manifest: SidManifest | None
    seq: int
    version: str

    @property
    def same_tokenizer(self) -> bool:
        return self.previous_manifest is not None and self.previous_manifest.tokenizer_hash == self.tokenizer_hash

    @property
    def code_key(self) -> list[str]:
        cols = code_columns(self.levels)
        # capacity/reassign move items between last-level codes of one prefix: partition by the prefix
        return cols[:-1] if self.cfg.collision in ("capacity", "reassign") and self.levels > 1 else cols


def prepare_context(cfg: AssignJobConfig) -> AssignContext:
    """Resolve and check every input before any heavy work (nothing is written here)."""
    root, catalog, artifact = (resolve(u, cfg.storage) for u in (cfg.output, cfg.catalog, cfg.tokenizer))
    tokenizer, _, _ = load_artifact(artifact)
    dims = dict(tokenizer.input_dims)  # type: ignore[attr-defined]
    files = check_files(catalog)  # every footer, in parallel: a bad file fails in seconds, before the actors start
    check_catalog_schema(file_schema(files[0][0]), dims, catalog.uri)  # dims must match the tokenizer
    previous, prev_manifest = None, None
    if cfg.previous:
        try:
            vdir, prev_manifest = resolve_version(root, version=None if cfg.previous == "LATEST" else cfg.previous)
        except SIDTableError as e:
            raise SIDTableError(f"--previous {cfg.previous}: {e}") from e
        previous = prev_manifest.version
        if prev_manifest.num_levels != tokenizer.num_levels and prev_manifest.tokenizer_hash == \
                artifact_hash(artifact):
            raise SIDTableError(f"{vdir.uri}: manifest says {prev_manifest.num_levels} levels, tokenizer has "
                                f"{tokenizer.num_levels}")
    tok_hash = artifact_hash(artifact)
    seq = prev_manifest.seq + 1 if prev_manifest else _next_seq(root)
    settings = {k: v for k, v in to_dict(cfg).items() if k in ("collision", "max_suffix", "capacity",
                                                                 "capacity_candidates", "retire_versions",
                                                                 "num_partitions")}
    digest = pub.input_digest(catalog, tok_hash, previous, settings)
    version = pub.find_by_digest(root, digest) or pub.version_name(seq, digest)
    return AssignContext(cfg, root, catalog, artifact, list(dims), tokenizer.num_levels, tokenizer.codebook_size, tok_hash,
                    previous, prev_manifest, pub.version_seq(version), version)


def _next_seq(root: Location) -> int:
    versions = pub.published_versions(root)
    return pub.version_seq(versions[-1]) + 1 if versions else 1
