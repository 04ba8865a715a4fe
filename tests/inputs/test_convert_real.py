"""Converters over the real datasets in ../shared/data (skipped when absent), checked against
independent plain-Python readings of the raw files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from simcit_dist.data.parquet_io import read_table
from simcit_dist.data.schemas import arrow_to_embeddings
from simcit_dist.inputs.config import (
    AmazonConfig,
    BehaviourConfig,
    ConvertJobConfig,
    FoursquareConfig,
    PrepareJobConfig,
    TextEmbedConfig,
)
from simcit_dist.inputs.converters import convert
from simcit_dist.inputs.converters.text_embed import item_texts, load_encoder
from simcit_dist.inputs.prepare import prepare_data
from simcit_dist.storage import resolve


def _reference_pairs(seqs: list[list[int]], window: int) -> Counter:
    pairs: Counter = Counter()
    for seq in seqs:
        for i, a in enumerate(seq):
            for b in seq[i + 1: i + 1 + window]:
                if a != b:
                    pairs[(min(a, b), max(a, b))] += 1
    return pairs


def _pairs(path: str) -> Counter:
    t = read_table(resolve(path))
    return Counter({(a, b): w for a, b, w in zip(t["item_a"].to_pylist(), t["item_b"].to_pylist(),
                                                   t["weight"].to_pylist())})


def _prepare(base: Path, **kw) -> dict:
    report = prepare_data(PrepareJobConfig(catalog=f"{base}/out/catalog", pairs=f"{base}/out/pairs",
                                           interactions=f"{base}/out/interactions", output=f"{base}/prepared",
                                           run_dir=f"{base}/run", num_buckets=4, **kw))
    return {k: t.rejected for k, t in report.tables.items()}


@pytest.mark.slow
def test_beauty_behaviour_only(shared_data, tmp_path, ray_local) -> None:
    raw = json.loads((shared_data / "amazon_beauty" / "Beauty.inter.json").read_text())
    cfg = ConvertJobConfig(source="amazon", output=f"{tmp_path}/out", run_dir=f"{tmp_path}/run", amazon=AmazonConfig(
        inter_json=str(shared_data / "amazon_beauty" / "Beauty.inter.json"), behaviour=BehaviourConfig(cf_dim=16)))
    report = convert(cfg)
    assert (report.tables["interactions"].output_rows, report.tables["catalog"].output_rows) == (198_502, 12_101)
    inter = read_table(resolve(f"{tmp_path}/out/interactions"))
    user0 = inter.filter(inter["user_id"].to_numpy() == 0)
    assert user0["item_id"].to_pylist() == raw["0"] and user0["timestamp"].to_pylist() == list(range(len(raw["0"])))
    assert len(set(inter["user_id"].to_pylist())) == 22_363

    train = [seq[:-2] for seq in raw.values()]  # leave-one-out: last = test, second to last = validation
    assert _pairs(f"{tmp_path}/out/pairs") == _reference_pairs(train, 3)
    no_cf = set(range(12_101)) - {i for pair in _reference_pairs(train, 3) for i in pair}
    cat = read_table(resolve(f"{tmp_path}/out/catalog"))
    assert cat.column_names == ["item_id", "emb_cf"] and cat["emb_cf"].type.list_size == 16
    assert set(np.asarray(cat["item_id"])[cat["emb_cf"].is_null().to_numpy(zero_copy_only=False)].tolist()) == no_cf
    assert len(no_cf) == 33
    # Items seen only in held-out positions have no view at all: prepare rejects them, and their interactions.
    held = sum(1 for seq in raw.values() for i in seq if i in no_cf)
    assert _prepare(tmp_path) == {"catalog": {"no_modality": 33}, "pairs": {}, "interactions": {"unknown_item": held}}


def test_foursquare_nyc(shared_data, tmp_path, ray_local) -> None:
    checkins = np.load(shared_data / "foursquare_nyc" / "NYC.npy")
    pois = np.load(shared_data / "foursquare_nyc" / "NYC_POI.npy")
    cfg = ConvertJobConfig(source="foursquare", output=f"{tmp_path}/out", run_dir=f"{tmp_path}/run",
                           foursquare=FoursquareConfig(
                               checkins=str(shared_data / "foursquare_nyc" / "NYC.npy"),
                               pois=str(shared_data / "foursquare_nyc" / "NYC_POI.npy"),
                               behaviour=BehaviourConfig(holdout="fraction", cf_dim=8, min_item_interactions=10,
                                                         min_user_interactions=10)))
    report = convert(cfg)
    assert report.tables["interactions"].notes["filtered_min_count"] == 0  # the published file is already 10-core
    cat = read_table(resolve(f"{tmp_path}/out/catalog"))
    assert cat["item_id"].to_pylist() == list(range(1, 5136))  # ids start at 1 and are kept
    np.testing.assert_array_equal(cat["latitude"].to_numpy(), pois[np.argsort(pois[:, 0]), 1])
    geo = arrow_to_embeddings(cat["emb_geo"])
    assert geo.shape == (5135, 32)
    lat = pois[np.argsort(pois[:, 0]), 1]
    np.testing.assert_allclose(geo[:, 0], (lat - lat.mean()) / lat.std(), rtol=1e-5, atol=1e-5)

    inter = read_table(resolve(f"{tmp_path}/out/interactions"))
    assert inter.num_rows == 147_938
    mine = checkins[checkins[:, 0] == 1]
    user1 = inter.filter(inter["user_id"].to_numpy() == 1)
    order = np.argsort(mine[:, 2], kind="stable")
    assert user1["item_id"].to_pylist() == mine[order, 1].tolist()
    assert user1["timestamp"].to_pylist() == sorted(mine[:, 2].tolist())

    seqs = []
    for user in np.unique(checkins[:, 0]):
        rows = checkins[checkins[:, 0] == user]
        items = rows[np.argsort(rows[:, 2], kind="stable"), 1].tolist()
        seqs.append(items[: int(np.floor(len(items) * 0.8))])  # chronological 80 % per user is training
    assert _pairs(f"{tmp_path}/out/pairs") == _reference_pairs(seqs, 3)
    rejected = _prepare(tmp_path)
    assert rejected == {"catalog": {}, "pairs": {}, "interactions": {}}


@pytest.mark.slow
def test_scientific_text_embeddings_on_a_subset(shared_data, tmp_path, ray_local) -> None:
    """The Ray Data encoder job on 24 items equals encoding the same texts directly, and two runs
    with two actors each (blocks finishing in any order) write the same files, byte for byte."""
    items = json.loads((shared_data / "amazon_scientific" / "Scientific.item.json").read_text())
    raw = json.loads((shared_data / "amazon_scientific" / "Scientific.inter.json").read_text())
    text = TextEmbedConfig(batch_size=4, num_actors=2)

    def run(name: str):
        return convert(ConvertJobConfig(
            source="amazon", output=f"{tmp_path}/{name}", run_dir=f"{tmp_path}/run-{name}", amazon=AmazonConfig(
                inter_json=str(shared_data / "amazon_scientific" / "Scientific.inter.json"),
                item_json=str(shared_data / "amazon_scientific" / "Scientific.item.json"), text=text,
                max_items=24, behaviour=BehaviourConfig(cf_dim=4))))

    report = run("out")
    run("again")
    written = {f.relative_to(tmp_path / "out"): f.read_bytes() for f in sorted((tmp_path / "out").rglob("*.parquet"))}
    again = {f.relative_to(tmp_path / "again"): f.read_bytes()
             for f in sorted((tmp_path / "again").rglob("*.parquet"))}
    assert len([f for f in written if f.parts[0] == "catalog"]) == 6  # 24 items / batch 4, capped at 4 x actors
    assert written == again
    kept = sum(1 for seq in raw.values() for i in seq if i < 24)
    assert report.tables["interactions"].output_rows == kept
    assert report.tables["interactions"].notes["outside_max_items"] == 58_492 - kept
    cat = read_table(resolve(f"{tmp_path}/out/catalog")).sort_by("item_id")
    assert cat["item_id"].to_pylist() == list(range(24))
    assert cat["title"].to_pylist() == [items[str(i)]["title"] for i in range(24)]
    emb = arrow_to_embeddings(cat["emb_text"])
    assert emb.shape == (24, 384) and cat["emb_text"].null_count == 0
    expected = load_encoder("cpu").encode(item_texts(cat, text.fields, text.max_chars), normalize_embeddings=True)
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    assert item_texts(cat, text.fields, 40)[0] == f"Title: {items['0']['title']}"[:40]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
