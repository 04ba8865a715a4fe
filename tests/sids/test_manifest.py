"""The SID manifest contract: a typed round trip, legacy manifests upgrade, bad ones fail by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simcit_dist.sids.manifest import (
    MANIFEST_FORMAT,
    SidManifest,
    SIDTableError,
    read_manifest,
    write_manifest,
)
from simcit_dist.sids.table import resolve_version
from simcit_dist.storage import resolve


def _full() -> SidManifest:
    return SidManifest(version="v00002-abc", seq=2, num_levels=3, codebook_size=[8, 8, 4], max_suffix=5,
                       tokenizer="s3://b/tok", tokenizer_hash="h", catalog="s3://b/cat", previous="v00001-xyz",
                       same_tokenizer=True, settings={"collision": "suffix"}, counts={"items": 10},
                       metrics={"collision_rate": 0.1}, code_counts=[[1, 2], [3, 4]], diff={"added": 1},
                       exports={"algr": "s3://b/x"}, source={"uri": "u"})


def test_round_trip_through_storage(tmp_path: Path) -> None:
    loc = resolve(str(tmp_path / "manifest.json"))
    write_manifest(loc, _full())
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["format"] == MANIFEST_FORMAT and on_disk["codebook_size"] == [8, 8, 4]
    back = read_manifest(loc)
    assert back == _full() and back.level_sizes() == [8, 8, 4] and back.items == 10


def test_legacy_algr_manifest_is_upgraded_and_unknown_keys_kept() -> None:
    legacy = {"version": "v00000-algr-external", "num_levels": 3, "codebook_size": 8192, "max_suffix": 0,
              "num_items": 42, "source": "s3://b/seq.csv", "item_id": "sum(...)", "written_by": "other tool"}
    m = SidManifest.from_dict(legacy)
    assert m.format == 1 and m.items == 42 and m.level_sizes() == [8192] * 3
    assert m.source == {"uri": "s3://b/seq.csv", "item_id": "sum(...)"}
    assert m.extra == {"written_by": "other tool"} and m.to_dict()["written_by"] == "other tool"


@pytest.mark.parametrize(("change", "message"), [
    ({"num_levels": None}, r"missing \['num_levels'\]"),
    ({"format": MANIFEST_FORMAT + 1}, "newer than this reader"),
    ({"codebook_size": [8, 8]}, "does not fit num_levels 3"),
    ({"max_suffix": -1}, "max_suffix -1 < 0"),
])
def test_bad_manifest_names_the_problem(change: dict, message: str) -> None:
    data = {**_full().to_dict(), **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(SIDTableError, match=message):
        SidManifest.from_dict(data, "x/manifest.json")


def test_reader_checks_the_manifest_belongs_to_its_version(tmp_path: Path) -> None:
    root = resolve(str(tmp_path))
    write_manifest(root.child("versions", "v00003-def", "manifest.json"), _full())  # says v00002-abc
    (tmp_path / "LATEST").write_text("v00003-def\n")
    with pytest.raises(SIDTableError, match="names version 'v00002-abc', not 'v00003-def'"):
        resolve_version(root)
    (tmp_path / "versions" / "v00003-def" / "manifest.json").write_text("{not json")
    with pytest.raises(SIDTableError, match="corrupt manifest"):
        resolve_version(root)
