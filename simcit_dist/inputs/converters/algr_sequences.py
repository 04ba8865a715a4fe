"""AL-GR generative-recommendation rows (``train_data.csv``) -> SID token sequences + an external SID table.

Input: tab-separated, header ``id, system, user, answer`` (any order). ``user`` is a prompt
whose history is one run of SID tokens, ``answer`` is the next item(s) as tokens. Each item is
``num_levels`` tokens ``C{code + level * codebook_size}`` (AL-GR: 3 x 8192, so
``C{l1}C{l2+8192}C{l3+16384}``). Fields are split on tabs without CSV quoting (the prompts
contain commas and Chinese punctuation, never tabs or newlines).

Outputs (row = 0-based data row of the file, the header is not a row):

- ``sequences/``: ``user_row`` int64, ``sample_id`` (the ``id`` field), ``position`` int32
  (0-based over history then answer), ``c1..cL`` int32 (codes without level offsets),
  ``item_id`` int64, ``is_target`` (token group comes from ``answer``).
- ``interactions/``: canonical ``user_id`` (= user_row), ``item_id``, ``timestamp`` (= position).
- ``sids/``: an external SID table in the published layout of :mod:`simcit_dist.sids.table`
  (``LATEST`` -> ``versions/v00000-algr-external/{manifest.json, sids/part-*.parquet}``), one row per
  distinct SID, suffix 0, so the recommender can consume AL-GR's own SIDs.

AL-GR rows carry no item ids; an item is identified by its SID, so
``item_id = sum(c_l * codebook_size ** (L - 1 - l))`` (injective, deterministic). Distinct SIDs
are found by hash-partitioning the ids of every range into ``num_buckets`` buckets (a bucket
file per range, a row group per bucket) and de-duplicating each bucket in its own task.

Rejects: ``malformed_row`` (not 4 fields / not UTF-8), ``bad_sid`` (no token run in ``user``,
more than one run, an answer that is not only tokens, a token count not a multiple of
``num_levels``, or a code outside its level's range).
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pyarrow as pa
import ray

from simcit_dist.data.parquet_parts import PartWriter, hash_bucket, read_partition, write_partitioned
from simcit_dist.data.rejects import BAD_SID, MALFORMED_ROW, RejectBuffer, TableSummary
from simcit_dist.data.run_output import RunReport, scratch_dir, write_rejects
from simcit_dist.data.schemas import INTERACTIONS_SCHEMA, SchemaError
from simcit_dist.data.task_gather import gather
from simcit_dist.data.text_lines import LineRange, first_line, iter_lines, line_ranges
from simcit_dist.inputs.config import AlgrConfig
from simcit_dist.sids.manifest import SidManifest, write_manifest
from simcit_dist.sids.table import LATEST, MANIFEST, code_columns, sid_schema, sid_strings, version_dir
from simcit_dist.storage import Location, write_text

log = logging.getLogger(__name__)

COLUMNS = ("id", "system", "user", "answer")
TOKEN_RUN = re.compile(r"(?:C\d+)+")
TOKEN = re.compile(r"C(\d+)")
SID_VERSION = "v00000-algr-external"  # "v<seq>-<tag>", the version naming of simcit_dist.sids


class SidFormatError(ValueError):
    """A token sequence that is not a whole number of valid SIDs (the message says which token)."""


def sequence_schema(num_levels: int) -> pa.Schema:
    return pa.schema([("user_row", pa.int64()), ("sample_id", pa.string()), ("position", pa.int32())]
                     + [(c, pa.int32()) for c in code_columns(num_levels)]
                     + [("item_id", pa.int64()), ("is_target", pa.bool_())])


def parse_tokens(text: str, num_levels: int, codebook_size: int, field: str) -> np.ndarray:
    """``"C1C8193C16390"`` -> codes ``[[1, 1, 6]]`` (items x levels), offsets removed and checked."""
    tokens = np.array([int(t) for t in TOKEN.findall(text)], dtype=np.int64)
    if tokens.size == 0:
        raise SidFormatError(f"{field}: no SID tokens")
    if tokens.size % num_levels:
        raise SidFormatError(f"{field}: {tokens.size} tokens, not a multiple of {num_levels} levels")
    codes = tokens.reshape(-1, num_levels) - np.arange(num_levels) * codebook_size
    bad = np.argwhere((codes < 0) | (codes >= codebook_size))
    if bad.size:
        item, level = (int(x) for x in bad[0])
        low = level * codebook_size
        raise SidFormatError(f"{field}: token {item * num_levels + level} (C{tokens[item * num_levels + level]}) is "
                             f"level {level + 1} of item {item}, expected C{low}..C{low + codebook_size - 1}")
    return codes


def parse_row(fields: list[str], idx: dict[str, int], num_levels: int, codebook_size: int) -> tuple[np.ndarray, int]:
    """(codes of history then answer, number of history items) for one row."""
    runs = TOKEN_RUN.findall(fields[idx["user"]])
    if len(runs) != 1:
        raise SidFormatError(f"user: {len(runs)} runs of SID tokens, expected exactly 1")
    history = parse_tokens(runs[0], num_levels, codebook_size, "user")
    answer_text = fields[idx["answer"]].strip()
    if not TOKEN_RUN.fullmatch(answer_text):
        raise SidFormatError(f"answer: expected only SID tokens, got {answer_text[:40]!r}")
    answer = parse_tokens(answer_text, num_levels, codebook_size, "answer")
    return np.concatenate([history, answer]), len(history)


def sid_item_ids(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    weights = codebook_size ** np.arange(codes.shape[1] - 1, -1, -1, dtype=np.int64)
    return codes.astype(np.int64) @ weights


def header_index(loc: Location) -> tuple[dict[str, int], int]:
    """Field index of each expected column, and the number of fields per line."""
    names = first_line(loc).decode("utf-8", "replace").split("\t")
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise SchemaError(f"{loc.uri}: missing column(s) {missing}; expected a tab-separated header with "
                          f"{list(COLUMNS)}, got {names[:8]}")
    return {c: names.index(c) for c in COLUMNS}, len(names)


def convert_sequences(loc: Location, cfg: AlgrConfig, staged: Location, report: RunReport) -> None:
    idx, num_fields = header_index(loc)
    ranges = line_ranges(loc, cfg.range_bytes)
    log.info("converting %s in %d range task(s)", loc.uri, len(ranges))
    results = gather(_convert_range.remote(loc, rng, i, idx, num_fields, cfg, staged) for i, rng in enumerate(ranges))
    seq = report.table("sequences")
    parts: dict[int, list[tuple[Location, int]]] = {}
    for i, (summary, buckets) in enumerate(results):
        seq.merge(summary)
        for bucket, row_group in buckets.items():
            parts.setdefault(bucket, []).append((_bucket_file(staged, i), row_group))
    seq.files = 1
    counts = gather(_write_sid_bucket.remote(b, parts[b], cfg, staged) for b in sorted(parts))
    _write_manifest(staged, cfg, sum(counts), loc.uri)
    report.table("sids").output_rows = sum(counts)


def _bucket_file(staged: Location, index: int) -> Location:
    return scratch_dir(staged).child("sid_ids", f"part-{index:06d}.parquet")


@ray.remote
def _convert_range(loc: Location, rng: LineRange, index: int, idx: dict[str, int], num_fields: int,
                   cfg: AlgrConfig, staged: Location) -> tuple[TableSummary, dict[int, int]]:
    rejects = RejectBuffer(loc.uri)
    summary = TableSummary()
    schema = sequence_schema(cfg.num_levels)
    seq_out = PartWriter(staged.child("sequences", f"part-{index:06d}.parquet"), schema)
    inter_out = PartWriter(staged.child("interactions", f"part-{index:06d}.parquet"), INTERACTIONS_SCHEMA)
    pending: list[tuple[int, str, np.ndarray, int]] = []
    seen: list[np.ndarray] = []
    for line_no, raw in enumerate(iter_lines(loc, rng.start, rng.end), start=rng.first_line):
        if line_no == 0:
            continue
        row = line_no - 1
        summary.input_rows += 1
        try:
            fields = raw.decode("utf-8").split("\t")
        except UnicodeDecodeError as e:
            rejects.add([row], MALFORMED_ROW, None, f"not UTF-8: {e}")
            continue
        if len(fields) != num_fields:
            rejects.add([row], MALFORMED_ROW, None, f"{len(fields)} tab-separated fields, expected {num_fields}")
            continue
        try:
            codes, history = parse_row(fields, idx, cfg.num_levels, cfg.codebook_size)
        except SidFormatError as e:
            rejects.add([row], BAD_SID, str(e).split(":")[0], str(e))
            continue
        pending.append((row, fields[idx["id"]], codes, history))
        if len(pending) >= cfg.chunk_rows:
            seen.append(_flush(pending, cfg, seq_out, inter_out))
            pending = []
    seen.append(_flush(pending, cfg, seq_out, inter_out))
    seq_out.close()
    inter_out.close()
    summary.output_rows = summary.input_rows - len(rejects)
    summary.notes["item_tokens"] = seq_out.rows  # (row, item) entries written
    summary.add_rejects(rejects.counts)
    write_rejects(staged, f"sequences-{index:06d}", rejects)
    ids = np.unique(np.concatenate(seen))
    buckets = write_partitioned(pa.table({"item_id": ids}), hash_bucket(ids, cfg.num_buckets),
                                _bucket_file(staged, index))
    return summary, buckets


def _flush(pending: list[tuple[int, str, np.ndarray, int]], cfg: AlgrConfig, seq_out: PartWriter,
           inter_out: PartWriter) -> np.ndarray:
    if not pending:
        return np.zeros(0, dtype=np.int64)
    lengths = np.array([len(c) for _, _, c, _ in pending])
    codes = np.concatenate([c for _, _, c, _ in pending]).astype(np.int32)
    rows = np.repeat([r for r, _, _, _ in pending], lengths)
    positions = np.concatenate([np.arange(n) for n in lengths]).astype(np.int32)
    is_target = np.concatenate([np.arange(len(c)) >= h for _, _, c, h in pending])
    item_ids = sid_item_ids(codes, cfg.codebook_size)
    sample = pa.array([s for _, s, _, _ in pending], pa.string()).take(pa.array(np.repeat(np.arange(len(pending)),
                                                                                          lengths)))
    table = {"user_row": rows, "sample_id": sample, "position": positions}
    table |= {c: codes[:, i] for i, c in enumerate(code_columns(cfg.num_levels))}
    seq_out.write(pa.table(table | {"item_id": item_ids, "is_target": is_target}))
    inter_out.write(pa.table({"user_id": rows, "item_id": item_ids, "timestamp": positions.astype(np.int64)}))
    return np.unique(item_ids)


@ray.remote
def _write_sid_bucket(bucket: int, parts: list[tuple[Location, int]], cfg: AlgrConfig, staged: Location) -> int:
    ids = np.unique(read_partition(parts, pa.schema([("item_id", pa.int64())]))["item_id"].to_numpy())
    codes = np.stack([(ids // cfg.codebook_size ** (cfg.num_levels - 1 - lvl)) % cfg.codebook_size
                      for lvl in range(cfg.num_levels)], axis=1).astype(np.int32)
    suffix = np.zeros(len(ids), dtype=np.int32)
    table = {"item_id": ids} | {c: codes[:, i] for i, c in enumerate(code_columns(cfg.num_levels))}
    table |= {"suffix": suffix, "sid": sid_strings(codes, suffix)}
    root = version_dir(staged.child("sids"), SID_VERSION)
    with PartWriter(root.child("sids", f"part-{bucket:05d}.parquet"), sid_schema(cfg.num_levels)) as out:
        out.write(pa.table(table))
    return len(ids)


def _write_manifest(staged: Location, cfg: AlgrConfig, num_items: int, source: str) -> None:
    root = staged.child("sids")
    write_manifest(version_dir(root, SID_VERSION).child(MANIFEST), SidManifest(
        version=SID_VERSION, num_levels=cfg.num_levels, codebook_size=cfg.codebook_size, max_suffix=0,
        counts={"items": num_items},
        source={"uri": source, "format": "AL-GR sequences CSV",
                "item_id": "sum(c_l * codebook_size ** (num_levels - 1 - l)): AL-GR rows have no item ids"}))
    write_text(root.child(LATEST), SID_VERSION + "\n")
