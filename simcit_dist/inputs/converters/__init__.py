"""Converters from raw published formats to the canonical Parquet tables (``jobs/convert.py``).

One source per run (``ConvertJobConfig.source``):

- ``algr`` (:mod:`.algr_csv`, :mod:`.algr_npz`, :mod:`.algr_sequences`): AL-GR Item-EMB CSV,
  contrastive / reconstruct npz, and the SID training rows; bounded memory and Ray tasks
  over byte / row ranges, because these inputs are tens of GB;
- ``amazon`` (:mod:`.amazon`): Amazon Scientific (text -> ``emb_text``) and Beauty (behaviour
  only), TIGER / LETTER layout;
- ``foursquare`` (:mod:`.foursquare`): Foursquare NYC/TKY check-ins and POI coordinates;
- ``embeddings`` (:mod:`.embeddings`): the user's own item embeddings (.npy, .pt, Parquet) as a
  new modality of an existing catalog, joined by item id.

Every run writes ``<output>/{catalog,pairs,interactions,...}/``, ``<output>/rejects/`` and
``<output>/summary.json`` through a staging prefix (:mod:`simcit_dist.data.run_output`), and
fails without publishing when a table's reject fraction exceeds ``max_reject_fraction``.
"""

from __future__ import annotations

from simcit_dist.config_loader import to_dict
from simcit_dist.data.run_output import RunReport, run_staged
from simcit_dist.inputs.config import ConvertJobConfig
from simcit_dist.inputs.converters.algr_csv import convert_item_emb_csv
from simcit_dist.inputs.converters.algr_npz import convert_npz
from simcit_dist.inputs.converters.algr_sequences import convert_sequences
from simcit_dist.inputs.converters.amazon import convert_amazon
from simcit_dist.inputs.converters.embeddings import convert_embeddings
from simcit_dist.inputs.converters.foursquare import convert_foursquare
from simcit_dist.storage import Location, resolve


def convert(cfg: ConvertJobConfig) -> RunReport:
    """Convert ``cfg.source`` into ``cfg.output``; returns the report (also in ``summary.json``).

    Raises :class:`simcit_dist.data.rejects.RejectThresholdError` or the file-level error; the
    previous output is then left in place.
    """
    target = resolve(cfg.output, cfg.storage)
    run_dir = resolve(cfg.run_dir, cfg.storage)
    report = RunReport(job="convert", output=target.uri, run_dir=run_dir.uri,
                       max_reject_fraction=cfg.max_reject_fraction, config=to_dict(cfg))

    def body(staged: Location) -> None:
        if cfg.source == "algr":
            _convert_algr(cfg, staged, report)
        elif cfg.source == "amazon":
            convert_amazon(cfg.amazon, cfg.storage, staged, report)
        elif cfg.source == "embeddings":
            convert_embeddings(cfg.embeddings, cfg.storage, staged, report)
        else:
            convert_foursquare(cfg.foursquare, cfg.storage, staged, report)

    return run_staged(report, target, run_dir, body)


def _convert_algr(cfg: ConvertJobConfig, staged: Location, report: RunReport) -> None:
    algr = cfg.algr
    loc = resolve(algr.input, cfg.storage)
    if algr.format == "item_emb_csv":
        convert_item_emb_csv(loc, algr, staged, report)
    elif algr.format == "sequences":
        convert_sequences(loc, algr, staged, report)
    else:
        convert_npz(loc, algr, staged, report, with_pairs=algr.format == "contrastive_npz")
