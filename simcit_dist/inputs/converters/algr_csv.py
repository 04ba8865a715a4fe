"""AL-GR Item-EMB CSV -> catalog ``item_id`` (int64), ``emb`` (fixed_size_list<float32>[dim]), ``item_key``.

Input: a header naming ``base62_string`` (the item id) and ``feature`` (base64 of ``dim``
little-endian float32 = ``4 x dim`` bytes), then one item per line. Files are tens of GB, so
the file is cut into byte ranges (:mod:`simcit_dist.data.text_lines`), one Ray task per range;
each task streams its lines and writes ``catalog/part-<range>.parquet`` every ``chunk_rows``
rows (memory per task ~ ``chunk_rows x 5 KB`` at dim 512).

Per-row rejects: ``malformed_row`` (wrong number of fields), ``bad_id`` / ``id_overflow`` (see
:mod:`simcit_dist.data.base62`), ``bad_base64`` (characters outside the base64 alphabet or bad
padding), ``wrong_byte_length``. NaN/Inf/zero vectors and duplicate ids are left to
``prepare_data`` (one place for value checks). A header without the two columns is a
file-level :class:`SchemaError`.
"""

from __future__ import annotations

import base64
import binascii
import logging

import numpy as np
import pyarrow as pa
import ray

from simcit_dist.data import base62
from simcit_dist.data.parquet_parts import PartWriter
from simcit_dist.data.rejects import BAD_BASE64, MALFORMED_ROW, WRONG_BYTE_LENGTH, RejectBuffer, TableSummary
from simcit_dist.data.run_output import RunReport, write_rejects
from simcit_dist.data.schemas import ITEM_ID, SchemaError, embeddings_to_arrow
from simcit_dist.data.task_gather import gather
from simcit_dist.data.text_lines import LineRange, first_line, iter_lines, line_ranges
from simcit_dist.inputs.config import AlgrConfig
from simcit_dist.inputs.converters.common import ITEM_KEY, algr_catalog_schema, reject_bad_base62, short
from simcit_dist.storage import Location

log = logging.getLogger(__name__)

ID_COLUMN, FEATURE_COLUMN = "base62_string", "feature"


def header_columns(loc: Location, cfg: AlgrConfig) -> tuple[int, int, int]:
    """(id field, feature field, number of fields) from the header, or the fixed layout without one."""
    if not cfg.csv_header:
        return 0, 1, 2
    names = [n.strip().strip('"') for n in first_line(loc).decode("utf-8", "replace").split(cfg.csv_delimiter)]
    missing = [c for c in (ID_COLUMN, FEATURE_COLUMN) if c not in names]
    if missing:
        raise SchemaError(f"{loc.uri}: missing column(s) {missing}; expected a header with {ID_COLUMN!r} and "
                          f"{FEATURE_COLUMN!r} separated by {cfg.csv_delimiter!r}, got {names}")
    return names.index(ID_COLUMN), names.index(FEATURE_COLUMN), len(names)


def convert_item_emb_csv(loc: Location, cfg: AlgrConfig, staged: Location, report: RunReport) -> None:
    """One Ray task per byte range; fills ``report.tables['catalog']``."""
    columns = header_columns(loc, cfg)
    ranges = line_ranges(loc, cfg.range_bytes)
    log.info("converting %s in %d range task(s)", loc.uri, len(ranges))
    parts = gather(_convert_range.remote(loc, rng, i, columns, cfg, staged) for i, rng in enumerate(ranges))
    catalog = report.table("catalog")
    for part in parts:
        catalog.merge(part)
    catalog.files = 1
    catalog.notes["id_kind"] = "base62"


@ray.remote
def _convert_range(loc: Location, rng: LineRange, index: int, columns: tuple[int, int, int], cfg: AlgrConfig,
                   staged: Location) -> TableSummary:
    id_col, feat_col, num_fields = columns
    delim = cfg.csv_delimiter.encode()
    rejects = RejectBuffer(loc.uri)
    summary = TableSummary()
    pending: tuple[list[int], list[bytes], list[bytes]] = ([], [], [])
    with PartWriter(staged.child("catalog", f"part-{index:06d}.parquet"), algr_catalog_schema(cfg.dim)) as out:
        for line_no, line in enumerate(iter_lines(loc, rng.start, rng.end), start=rng.first_line):
            if cfg.csv_header and line_no == 0:
                continue
            row = line_no - int(cfg.csv_header)
            summary.input_rows += 1
            fields = line.split(delim)
            if len(fields) != num_fields:
                rejects.add([row], MALFORMED_ROW, None, f"{len(fields)} fields separated by {cfg.csv_delimiter!r}, "
                            f"expected {num_fields}: {short(line)}")
                continue
            pending[0].append(row)
            pending[1].append(fields[id_col].strip().strip(b'"'))  # neither alphabet has quotes
            pending[2].append(fields[feat_col].strip().strip(b'"'))
            if len(pending[0]) >= cfg.chunk_rows:
                out.write(_decode_chunk(*pending, cfg, rejects))
                pending = ([], [], [])
        out.write(_decode_chunk(*pending, cfg, rejects))
        summary.output_rows = out.rows
    summary.add_rejects(rejects.counts)
    write_rejects(staged, f"catalog-{index:06d}", rejects)
    return summary


def _decode_chunk(rows: list[int], ids: list[bytes], features: list[bytes], cfg: AlgrConfig,
                  rejects: RejectBuffer) -> pa.Table:
    row_arr = np.asarray(rows, dtype=np.int64)
    values, status = base62.decode_array(pa.array(ids, pa.binary()), cfg.base62_alphabet)
    reject_bad_base62(rejects, row_arr, status, ids, ID_COLUMN, cfg.base62_alphabet)
    want = 4 * cfg.dim
    keep: list[int] = []
    blobs: list[bytes] = []
    for i in np.flatnonzero(status == base62.OK):
        try:
            blob = base64.b64decode(features[i], validate=True)
        except (binascii.Error, ValueError) as e:
            rejects.add([rows[i]], BAD_BASE64, FEATURE_COLUMN, f"{e}: {short(features[i])}")
            continue
        if len(blob) != want:
            rejects.add([rows[i]], WRONG_BYTE_LENGTH, FEATURE_COLUMN,
                        f"{len(blob)} bytes, expected {want} ({cfg.dim} float32)")
            continue
        keep.append(int(i))
        blobs.append(blob)
    emb = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), cfg.dim)
    return pa.table({ITEM_ID: pa.array(values[keep], pa.int64()), "emb": embeddings_to_arrow(emb),
                     ITEM_KEY: pa.array([ids[i] for i in keep], pa.binary()).cast(pa.string())})
