from __future__ import annotations

import math

import pytest

from simcit_dist.config_loader import ConfigError, build, to_dict
from simcit_dist.tokenizer.config import (
    RQKMeansConfig,
    SimCITConfig,
    TemperatureSchedule,
    TokenizerConfig,
)
from simcit_dist.tokenizer.schedule import gumbel_temperature


def test_defaults_follow_the_paper_and_round_trip_through_the_loader() -> None:
    cfg = TokenizerConfig()
    assert cfg.kind == "simcit"
    s = cfg.simcit
    assert (s.hidden_dims, s.latent_dim, s.num_levels, s.codebook_size) == ([512, 256, 128], 96, 3, 256)
    assert (s.temperature.start, s.tau, s.symmetric) == (0.2, 0.1, True)
    assert not (s.commitment_weight or s.codeword_weight or s.dead_code_reset)  # health terms off by default
    assert build(TokenizerConfig, to_dict(cfg)) == cfg
    algr = build(TokenizerConfig, {"simcit": {"codebook_size": 8192, "temperature": {"kind": "cosine"}}})
    assert algr.codebook_size == 8192 and algr.simcit.temperature.kind == "cosine"
    assert build(TokenizerConfig, {"kind": "rqkmeans"}).num_levels == 3


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"simcit": {"codebook_size": 1}}, "codebook_size must be >= 2"),
        ({"rqvae": {"num_levels": 0}}, "num_levels must be >= 1"),
        ({"simcit": {"tau": 0.0}}, "tau"),
        ({"simcit": {"temperature": {"start": 0.1, "floor": 0.5}}}, "floor"),
        ({"simcit": {"activation": "tanh"}}, "allowed values"),
        ({"kind": "vq"}, "allowed values"),
        ({"rqkmeans": {"codebook_size": 64, "max_sample": 10}}, "max_sample"),
    ],
)
def test_invalid_values_name_the_field(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        build(TokenizerConfig, data)


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ValueError, match="codebook_size must be >= 2"):
        SimCITConfig(codebook_size=1)
    with pytest.raises(ValueError, match="iters"):
        RQKMeansConfig(iters=0)


@pytest.mark.parametrize("kind", ["linear", "exponential", "cosine"])
def test_temperature_schedule_ends(kind: str) -> None:
    sched = TemperatureSchedule(start=0.2, floor=0.02, kind=kind)  # type: ignore[arg-type]
    temps = [gumbel_temperature(sched, s, 101) for s in range(101)]
    assert temps[0] == pytest.approx(0.2) and temps[-1] == pytest.approx(0.02)
    assert all(a >= b - 1e-12 for a, b in zip(temps, temps[1:]))  # monotone annealing
    assert gumbel_temperature(sched, 500, 101) == pytest.approx(0.02)  # holds the floor


def test_temperature_schedule_midpoints() -> None:
    mid = 50  # progress 0.5 over 101 steps
    lin = TemperatureSchedule(0.2, 0.02, "linear")
    exp = TemperatureSchedule(0.2, 0.02, "exponential")
    cos = TemperatureSchedule(0.2, 0.02, "cosine")
    assert gumbel_temperature(lin, mid, 101) == pytest.approx(0.11)
    assert gumbel_temperature(exp, mid, 101) == pytest.approx(0.2 * math.sqrt(0.1))
    assert gumbel_temperature(cos, mid, 101) == pytest.approx(0.11)
    assert gumbel_temperature(cos, 25, 101) == pytest.approx(0.02 + 0.18 * (1 + math.cos(math.pi / 4)) / 2)
    # anneal_steps sets the horizon regardless of the run length
    short = TemperatureSchedule(0.2, 0.02, "linear", anneal_steps=11)
    assert gumbel_temperature(short, 5, 1000) == pytest.approx(0.11)
    assert gumbel_temperature(short, 10, 1000) == pytest.approx(0.02)
    fixed = TemperatureSchedule(0.1, 0.1)
    assert gumbel_temperature(fixed, 7, 10) == pytest.approx(0.1)
