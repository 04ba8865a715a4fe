"""Text-embedding converter pieces that need neither the real datasets nor Ray."""

from __future__ import annotations

import pyarrow as pa

from simcit_dist.data.parquet_io import read_table
from simcit_dist.data.schemas import embedding_type
from simcit_dist.inputs.config import TextEmbedConfig
from simcit_dist.inputs.converters.text_embed import TEXT_DIM, embed_texts, item_texts
from simcit_dist.storage import resolve


def test_item_text_skips_empty_fields_and_is_cut_to_max_chars() -> None:
    table = pa.table({"item_id": [1, 2], "title": ["Lamp", None], "brand": [" Acme ", ""]})
    assert item_texts(table, ["title", "brand", "categories"], 100) == ["Title: Lamp. Brand: Acme.", ""]
    assert item_texts(table, ["title", "brand"], 6) == ["Title:", ""]


def test_an_empty_item_table_still_writes_a_readable_catalog_part(tmp_path) -> None:
    """No items (e.g. all filtered out) must leave a part with the schema, not an empty directory
    that every later reader fails on."""
    table = pa.table({"item_id": pa.array([], pa.int64()), "title": pa.array([], pa.string())})
    embed_texts(table, TextEmbedConfig(), resolve(str(tmp_path / "catalog")))
    out = read_table(resolve(str(tmp_path / "catalog")))
    assert out.num_rows == 0
    assert out.schema.field(TextEmbedConfig().column).type == embedding_type(TEXT_DIM)
    assert out.column_names == ["item_id", "title", TextEmbedConfig().column]
