from __future__ import annotations

import json

import pytest
import torch

from simcit_dist.config_loader import build
from simcit_dist.storage import resolve, write_bytes
from simcit_dist.tokenizer import TokenizerConfig, build_tokenizer
from simcit_dist.tokenizer.artifact import ArtifactError, artifact_hash, load_artifact, save_artifact
from tests.tokenizer.conftest import Catalog
from tests.tokenizer.test_models import SMALL


def _trained(kind: str, catalog: Catalog) -> tuple[object, TokenizerConfig, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    cfg = build(TokenizerConfig, {"kind": kind, kind: SMALL[kind]})
    tok = build_tokenizer(cfg, catalog.dims)
    batch = catalog.rows(torch.arange(128))
    if kind == "rqkmeans":
        tok.fit([batch])  # type: ignore[attr-defined]
    else:
        tok.training_loss(batch, 0, 1)[0].backward()  # type: ignore[attr-defined]
    return tok, cfg, batch


@pytest.mark.parametrize("kind", ["simcit", "rqvae", "rqkmeans"])
def test_round_trip_gives_the_same_codes_without_the_config_file(kind: str, catalog: Catalog, tmp_path) -> None:
    tok, cfg, batch = _trained(kind, catalog)
    loc = resolve(str(tmp_path / "tok"))
    digest = save_artifact(tok, cfg, catalog.dims, loc, extra={"steps": 1})  # type: ignore[arg-type]
    loaded, loaded_cfg, extra = load_artifact(loc)
    assert loaded_cfg == cfg and extra == {"steps": 1}
    assert type(loaded) is type(tok)
    assert torch.equal(loaded.encode(batch), tok.encode(batch))  # type: ignore[attr-defined]
    assert artifact_hash(loc) == digest
    books = (tmp_path / "tok" / "codebooks.npy").read_bytes()
    assert len(books) > 0


def test_hash_is_stable_across_resaves_and_changes_with_the_weights(catalog: Catalog, tmp_path) -> None:
    tok, cfg, _ = _trained("simcit", catalog)
    a, b = resolve(str(tmp_path / "a")), resolve(str(tmp_path / "b"))
    save_artifact(tok, cfg, catalog.dims, a)  # type: ignore[arg-type]
    save_artifact(tok, cfg, catalog.dims, b, extra={"steps": 7, "final_metrics": {"restores": 1.0}})  # type: ignore[arg-type]
    assert artifact_hash(a) == artifact_hash(b)  # training metadata does not change a code
    with torch.no_grad():
        tok.quantizer.codebooks[0, 0, 0] += 1.0  # type: ignore[attr-defined]
    c = resolve(str(tmp_path / "c"))
    save_artifact(tok, cfg, catalog.dims, c)  # type: ignore[arg-type]
    assert artifact_hash(c) != artifact_hash(a)


def test_missing_or_corrupt_files_raise_naming_the_location(catalog: Catalog, tmp_path) -> None:
    tok, cfg, _ = _trained("rqkmeans", catalog)
    loc = resolve(str(tmp_path / "art"))
    with pytest.raises(ArtifactError, match=f"{tmp_path}/art: no tokenizer artifact"):
        load_artifact(loc)
    save_artifact(tok, cfg, catalog.dims, loc)  # type: ignore[arg-type]
    weights = (tmp_path / "art" / "weights.pt").read_bytes()

    write_bytes(loc.child("weights.pt"), weights[: len(weights) // 2])
    with pytest.raises(ArtifactError, match="art/weights.pt: corrupt weights"):
        load_artifact(loc)

    (tmp_path / "art" / "weights.pt").unlink()
    with pytest.raises(ArtifactError, match="art: incomplete tokenizer artifact"):
        artifact_hash(loc)

    write_bytes(loc.child("weights.pt"), weights)
    meta = json.loads((tmp_path / "art" / "tokenizer.json").read_text())
    meta["config"]["rqkmeans"]["codebook_size"] = 16  # weights no longer fit the config
    write_bytes(loc.child("tokenizer.json"), json.dumps(meta).encode())
    with pytest.raises(ArtifactError, match="do not fit"):
        load_artifact(loc)

    write_bytes(loc.child("tokenizer.json"), b"{not json")
    with pytest.raises(ArtifactError, match="not JSON"):
        load_artifact(loc)


@pytest.mark.s3
def test_round_trip_on_s3(catalog: Catalog, s3_bucket: tuple[str, object]) -> None:
    uri, storage = s3_bucket
    tok, cfg, batch = _trained("rqkmeans", catalog)
    loc = resolve(f"{uri}/tokenizers/run1", storage)  # type: ignore[arg-type]
    digest = save_artifact(tok, cfg, catalog.dims, loc)  # type: ignore[arg-type]
    loaded, _, _ = load_artifact(loc)
    assert torch.equal(loaded.encode(batch), tok.encode(batch))  # type: ignore[attr-defined]
    assert artifact_hash(loc) == digest
