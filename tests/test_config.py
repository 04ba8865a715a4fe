from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from simcit_dist.config_loader import ConfigError, apply_overrides, load_config, parse_override
from simcit_dist.inputs.config import GenerateJobConfig
from tests.jobs_registry import all_configs, config_class_of, job_of_config


@dataclass
class Inner:
    size: int = 4
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"
    dims: list[int] = field(default_factory=lambda: [1, 2])
    name: str | None = None


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    flag: bool = False

    def __post_init__(self) -> None:
        if self.flag and self.inner.size > 10:
            raise ValueError("flag needs inner.size <= 10")


def test_overrides_parse_yaml_values() -> None:
    assert parse_override("a.b=4096") == (["a", "b"], 4096)
    assert parse_override("x=[1, 2]") == (["x"], [1, 2])
    assert parse_override("s=s3://b/p") == (["s"], "s3://b/p")
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}


def test_yaml_file_and_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("# header\ninner:\n  size: 8\n  mode: b\n")
    cfg = load_config(Outer, path, ["inner.rate=1", "inner.dims=[3]", "flag=true"])
    assert cfg.inner.size == 8 and cfg.inner.mode == "b" and cfg.flag is True
    assert cfg.inner.rate == 1.0 and isinstance(cfg.inner.rate, float)
    assert cfg.inner.dims == [3]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("inner.sise=3", "unknown config key 'inner.sise'; allowed keys here: ['dims', 'mode', 'name', 'rate', 'size']"),
        ("inner.size=big", "config key 'inner.size': expected an integer, got 'big'"),
        ("inner.size=true", "config key 'inner.size': expected an integer"),
        ("inner.mode=c", "config key 'inner.mode': 'c' is not allowed; allowed values: ['a', 'b']"),
        ("inner.dims=[1, x]", "config key 'inner.dims[1]'"),
        ("flag=1", "config key 'flag': expected true or false"),
        ("inner=5", "config key 'inner': expected a section"),
        ("noequals", "must look like dotted.key=value"),
    ],
)
def test_errors_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(Outer, None, [override])
    assert message in str(exc.value)


def test_post_init_rules_become_config_errors() -> None:
    with pytest.raises(ConfigError, match="flag needs inner.size <= 10"):
        load_config(Outer, None, ["flag=true", "inner.size=20"])


def test_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Outer, tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", all_configs(), ids=lambda p: p.name)
def test_every_conf_yaml_has_a_header_and_loads(path) -> None:
    assert path.read_text().startswith("#"), f"{path} must start with a comment saying what it runs"
    load_config(config_class_of(job_of_config(path)), path)


def test_generate_config_validation() -> None:
    with pytest.raises(ConfigError, match="num_tasks must be >= 1"):
        load_config(GenerateJobConfig, None, ["num_tasks=0"])


OLD_STYLE = [  # (job config, old-style YAML, words the error must contain)
    ("jobs/train_recommender.py", "training:\n  batch_size: 128\n", ["'training'", "train:", "GLOBAL batch"]),
    ("jobs/train_recommender.py", "train:\n  log_every_steps: 10\n", ["'train.log_every_steps'", "train.log_every"]),
    ("jobs/train_tokenizer.py", "train:\n  num_to_keep: 2\n", ["'train.num_to_keep'", "run.num_to_keep"]),
    ("jobs/train_tokenizer.py", "train:\n  max_failures: 1\n", ["'train.max_failures'", "run.max_failures"]),
    ("jobs/compare_tokenizers.py", "recommender:\n  training:\n    epochs: 3\n",
     ["'recommender.training'", "train:"]),
    ("jobs/pipeline.py", "recommender:\n  training:\n    epochs: 3\n", ["'recommender.training'", "train:"]),
]


@pytest.mark.parametrize(("job", "text", "words"), OLD_STYLE, ids=[f"{j}:{t.split(':')[0]}" for j, t, _ in OLD_STYLE])
def test_renamed_keys_fail_naming_their_replacement(tmp_path, job: str, text: str, words: list[str]) -> None:
    path = tmp_path / "old.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(config_class_of(job), path)
    for word in words:
        assert word in str(exc.value), str(exc.value)


def test_batch_size_is_global_in_both_trainers() -> None:
    rec = load_config(config_class_of("jobs/train_recommender.py"), None, ["train.batch_size=256",
                                                                         "train.num_workers=4"])
    tok = load_config(config_class_of("jobs/train_tokenizer.py"), None, ["train.batch_size=256", "train.num_workers=4"])
    assert rec.train.per_worker_batch == tok.train.per_worker_batch == 64
    assert rec.train.deepspeed_config()["train_micro_batch_size_per_gpu"] == 64
    assert rec.train.threads == tok.train.threads == 1  # torch_threads 0 = cpus_per_worker in both
    with pytest.raises(ConfigError, match="a positive multiple of train.num_workers"):
        load_config(config_class_of("jobs/train_recommender.py"), None, ["train.batch_size=250", "train.num_workers=4"])
