"""``manifest.json``: the typed, versioned description of one published SID version.

It is the contract between whoever writes SIDs (assignment, an imported external index, the
AL-GR converter) and whoever reads them (the recommender, nightly re-tokenization, reports):
one dataclass, written by :func:`write_manifest` and read by :func:`read_manifest` only.

``format`` is the manifest's own schema version. A reader refuses a format newer than it knows
(it cannot tell what changed); older manifests (written before ``format`` existed) are read as
format 1, with the AL-GR converter's former ``num_items``/``source``/``item_id`` keys moved into
``counts``/``source``. Keys this code does not know are kept in ``extra`` so a round trip loses
nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from simcit_dist.storage import Location, read_json, write_json

MANIFEST_FORMAT = 1
REQUIRED = ("version", "num_levels", "codebook_size", "max_suffix")


class SIDTableError(ValueError):
    """A published SID table or version is missing, corrupt, or inconsistent."""


@dataclass
class SidManifest:
    """One SID version. Counts, metrics and diff are open dicts: their keys grow with the job's
    reporting; the fields above them are what readers rely on."""

    version: str  # "v00003-<digest>": the directory name under versions/
    num_levels: int
    codebook_size: int | list[int]  # one size for every level, or one per level
    max_suffix: int  # the largest collision suffix in use (0: no collisions)
    seq: int = 1  # position in this root's history (1 = first version)
    tokenizer: str | None = None  # URI of the tokenizer artifact or external index the codes came from
    tokenizer_hash: str | None = None  # its content hash: equal hashes mean re-tokenization kept codes
    catalog: str | None = None  # the catalog the version was assigned over
    previous: str | None = None  # the version it was diffed against (nightly runs)
    same_tokenizer: bool = False
    settings: dict[str, Any] = field(default_factory=dict)  # assignment settings that shaped the SIDs
    counts: dict[str, int] = field(default_factory=dict)  # items, retired_sids, ...
    metrics: dict[str, float] = field(default_factory=dict)  # collision_rate, gini, perplexity_l<i>, ...
    code_counts: list[list[int]] = field(default_factory=list)  # per level: items per code
    diff: dict[str, Any] = field(default_factory=dict)  # added/removed/changed/... against `previous`
    exports: dict[str, str] = field(default_factory=dict)  # other layouts written beside it: name -> URI
    source: dict[str, str] = field(default_factory=dict)  # provenance of converted tables
    extra: dict[str, Any] = field(default_factory=dict)  # keys from a writer this reader does not know
    format: int = MANIFEST_FORMAT

    def __post_init__(self) -> None:
        sizes = self.level_sizes()
        if self.num_levels < 1 or len(sizes) != self.num_levels or min(sizes) < 1:
            raise SIDTableError(f"manifest {self.version}: codebook_size {self.codebook_size!r} does not fit "
                                f"num_levels {self.num_levels}")
        if self.max_suffix < 0:
            raise SIDTableError(f"manifest {self.version}: max_suffix {self.max_suffix} < 0")

    def level_sizes(self) -> list[int]:
        """The codebook size of each level."""
        k = self.codebook_size
        return [int(x) for x in k] if isinstance(k, list) else [int(k)] * self.num_levels

    @property
    def items(self) -> int:
        return int(self.counts.get("items", 0))

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**self.extra, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "manifest") -> SidManifest:
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise SIDTableError(f"{where}: corrupt manifest: missing {missing}")
        fmt = int(data.get("format", 1))
        if fmt > MANIFEST_FORMAT:
            raise SIDTableError(f"{where}: manifest format {fmt} is newer than this reader's ({MANIFEST_FORMAT}); "
                                "upgrade simcit_dist")
        data = _upgrade_legacy(dict(data))
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs.update(version=str(data["version"]), num_levels=int(data["num_levels"]),
                      max_suffix=int(data["max_suffix"]), format=fmt)
        if not isinstance(kwargs["codebook_size"], list):
            kwargs["codebook_size"] = int(kwargs["codebook_size"])
        try:
            return cls(**kwargs, extra={k: v for k, v in data.items() if k not in known})
        except TypeError as e:
            raise SIDTableError(f"{where}: corrupt manifest: {e}") from e


def _upgrade_legacy(data: dict[str, Any]) -> dict[str, Any]:
    """The AL-GR converter once wrote its provenance as top-level keys."""
    if "num_items" in data:
        data.setdefault("counts", {})["items"] = int(data.pop("num_items"))
    if isinstance(data.get("source"), str):
        data["source"] = {"uri": data.pop("source")}
    if "item_id" in data:
        data.setdefault("source", {})["item_id"] = str(data.pop("item_id"))
    return data


def write_manifest(loc: Location, manifest: SidManifest) -> None:
    write_json(loc, manifest.to_dict())


def read_manifest(loc: Location) -> SidManifest:
    try:
        data = read_json(loc)
    except ValueError as e:
        raise SIDTableError(f"{loc.uri}: corrupt manifest: {e}") from e
    if not isinstance(data, dict):
        raise SIDTableError(f"{loc.uri}: corrupt manifest: expected a JSON object, got {type(data).__name__}")
    return SidManifest.from_dict(data, loc.uri)
