"""The pair-view join (two storage-backed exchange rounds) equals a plain in-memory reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from simcit_dist.data.id_sample import anchor_mask
from simcit_dist.data.parquet_io import read_table
from simcit_dist.data.schemas import PARTNER_ID, arrow_to_embeddings
from simcit_dist.storage import resolve
from simcit_dist.tokenizer_training.pair_views import build_pair_views
from tests.helpers import small_catalog, write_catalog


def _inputs(tmp_path: Path) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    catalog = small_catalog(500)
    ids = catalog.column("item_id").to_numpy()
    rng = np.random.default_rng(0)
    a, b = rng.choice(ids, 300), rng.choice(ids, 300)
    a[:5] = b[:5]  # self-pairs are dropped
    write_catalog(catalog, str(tmp_path / "catalog"), files=2)
    write_catalog(pa.table({"item_a": a, "item_b": b}), str(tmp_path / "pairs"), files=2)
    return catalog, a, b


def _reference(ids: np.ndarray, a: np.ndarray, b: np.ndarray, anchors: set[int]) -> list[tuple[int, int | None]]:
    """Every (item, partner) link in both directions, plus one row per item without links; anchors only."""
    expected = [(x, y) for x, y in zip(a[5:].tolist(), b[5:].tolist())] + \
               [(y, x) for x, y in zip(a[5:].tolist(), b[5:].tolist())]
    linked = {x for x, _ in expected}
    expected += [(int(i), None) for i in ids if int(i) not in linked]
    return sorted([r for r in expected if r[0] in anchors], key=lambda t: (t[0], -1 if t[1] is None else t[1]))


def _check(got: pa.Table, catalog: pa.Table, expected: list[tuple[int, int | None]]) -> None:
    pairs = sorted(zip(got.column("item_id").to_pylist(), got.column(PARTNER_ID).to_pylist()),
                   key=lambda t: (t[0], -1 if t[1] is None else t[1]))
    assert pairs == expected and expected
    # embeddings: the anchor's own and the partner's, exactly
    ids = catalog.column("item_id").to_numpy()
    emb = dict(zip(ids.tolist(), arrow_to_embeddings(catalog.column("emb_b"))))
    own = arrow_to_embeddings(got.column("emb_b"))
    partner = arrow_to_embeddings(got.column("partner:emb_b"))
    for r, (item, other) in enumerate(zip(got.column("item_id").to_pylist(), got.column(PARTNER_ID).to_pylist())):
        assert np.array_equal(own[r], emb[item])
        if other is None:
            assert np.isnan(partner[r]).all()
        else:
            assert np.array_equal(partner[r], emb[other])


def test_pair_views_equal_reference_join(tmp_path, ray_local) -> None:
    catalog, a, b = _inputs(tmp_path)
    ids = catalog.column("item_id").to_numpy()
    built = build_pair_views(resolve(str(tmp_path / "catalog")), resolve(str(tmp_path / "pairs")),
                             ["emb_a", "emb_b"], resolve(str(tmp_path / "views")), num_partitions=3)
    got = read_table(resolve(str(tmp_path / "views")))
    assert built.rows == got.num_rows
    assert built.catalog_rows_shuffled == catalog.num_rows and built.shuffled_bytes > 0
    _check(got, catalog, _reference(ids, a, b, set(ids.tolist())))


def test_pair_views_of_a_sample_of_anchors(tmp_path, ray_local) -> None:
    """anchor_fraction keeps the rows of the sampled items only; their partners come from the whole
    catalog, but only the catalog rows of anchors and their partners are shuffled; the built views
    are reused at the same fraction and refused at another one."""
    catalog, a, b = _inputs(tmp_path)
    ids = catalog.column("item_id").to_numpy()
    anchors = set(ids[anchor_mask(ids, 0.3)].tolist())
    assert 100 < len(anchors) < 200  # about 30 % of 500
    views = resolve(str(tmp_path / "views"))
    args = (resolve(str(tmp_path / "catalog")), resolve(str(tmp_path / "pairs")), ["emb_a", "emb_b"], views)
    built = build_pair_views(*args, num_partitions=3, anchor_fraction=0.3)
    got = read_table(views)
    assert built.rows == got.num_rows
    expected = _reference(ids, a, b, anchors)
    assert any(p is not None and p not in anchors for _, p in expected)  # partners outside the sample
    _check(got, catalog, expected)
    needed = anchors | {p for _, p in expected if p is not None}
    assert built.catalog_rows_shuffled == len(needed) < len(ids)  # not the whole catalog
    again = build_pair_views(*args, num_partitions=3, anchor_fraction=0.3)
    assert again.rows == built.rows and again.shuffled_bytes == 0  # reused
    with pytest.raises(ValueError, match="anchor_fraction 0.3, this run asks for 1.0"):
        build_pair_views(*args, num_partitions=3)


def test_holdout_dataset_is_the_held_back_sample_without_progress_bars(tmp_path, ray_local) -> None:
    """Rank 0 reads it inside its train worker, where a Ray progress bar would be redrawn beside
    the job's own progress line for the rest of the run (ours is the one progress line)."""
    import ray.data

    from simcit_dist.data.id_sample import holdout_mask
    from simcit_dist.tokenizer_training.training_rows import holdout_dataset

    catalog = small_catalog(2000)
    loc = write_catalog(catalog, str(tmp_path / "catalog"))
    ds = holdout_dataset(loc, ["item_id", "emb_a"], 0.1, max_items=10_000)
    assert ray.data.DataContext.get_current().enable_progress_bars  # the default stays on elsewhere
    assert not ds.context.enable_progress_bars
    ids = catalog.column("item_id").to_numpy()
    expected = np.sort(ids[holdout_mask(ids, 0.1)])
    got = np.sort(ds.to_pandas()["item_id"].to_numpy())
    assert 100 < len(got) < 300 and np.array_equal(got, expected)
