"""The pair-view join (two storage-backed exchange rounds) equals a plain in-memory reference."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from simcit_dist.data.parquet_io import read_table
from simcit_dist.data.schemas import arrow_to_embeddings
from simcit_dist.distributed.tokenizer_data import PARTNER_ID, build_pair_views
from simcit_dist.storage import resolve
from tests.helpers import small_catalog, write_catalog


def test_pair_views_equal_reference_join(tmp_path, ray_local) -> None:
    catalog = small_catalog(500)
    ids = catalog.column("item_id").to_numpy()
    rng = np.random.default_rng(0)
    a, b = rng.choice(ids, 300), rng.choice(ids, 300)
    a[:5] = b[:5]  # self-pairs are dropped
    write_catalog(catalog, str(tmp_path / "catalog"), files=2)
    write_catalog(pa.table({"item_a": a, "item_b": b}), str(tmp_path / "pairs"), files=2)
    rows = build_pair_views(resolve(str(tmp_path / "catalog")), resolve(str(tmp_path / "pairs")),
                            ["emb_a", "emb_b"], resolve(str(tmp_path / "views")), num_partitions=3)
    got = read_table(resolve(str(tmp_path / "views")))
    assert rows == got.num_rows
    # reference: every (item, partner) link in both directions, plus one row per item without links
    links = sorted({*zip(a[5:].tolist(), b[5:].tolist())} | set())
    expected = sorted([(x, y) for x, y in zip(a[5:].tolist(), b[5:].tolist())] +
                      [(y, x) for x, y in zip(a[5:].tolist(), b[5:].tolist())])
    linked = {x for x, _ in expected}
    expected += [(int(i), None) for i in ids if int(i) not in linked]
    pairs = sorted(zip(got.column("item_id").to_pylist(), got.column(PARTNER_ID).to_pylist()),
                   key=lambda t: (t[0], -1 if t[1] is None else t[1]))
    assert pairs == sorted(expected, key=lambda t: (t[0], -1 if t[1] is None else t[1])) and links
    # embeddings: the anchor's own and the partner's, exactly
    emb = dict(zip(ids.tolist(), arrow_to_embeddings(catalog.column("emb_b"))))
    own = arrow_to_embeddings(got.column("emb_b"))
    partner = arrow_to_embeddings(got.column("partner:emb_b"))
    for r, (item, other) in enumerate(zip(got.column("item_id").to_pylist(), got.column(PARTNER_ID).to_pylist())):
        assert np.array_equal(own[r], emb[item])
        if other is None:
            assert np.isnan(partner[r]).all()
        else:
            assert np.array_equal(partner[r], emb[other])
