from __future__ import annotations

from typing import Any

import pytest
import torch

from simcit_dist.config_loader import build
from simcit_dist.data.schemas import PARTNER_ID
from simcit_dist.tokenizer import (
    FittableTokenizer,
    RQKMeans,
    SimCIT,
    Tokenizer,
    TokenizerConfig,
    TrainableTokenizer,
    build_tokenizer,
    gumbel_temperature,
)
from simcit_dist.tokenizer.inputs import partner_column
from simcit_dist.tokenizer.rqvae import RQVAE
from tests.tokenizer.conftest import Catalog
from tests.tokenizer.fake_dist import run_ranks

SMALL = {
    "simcit": {"hidden_dims": [32], "latent_dim": 16, "proj_dim": 12, "num_levels": 2, "codebook_size": 8},
    "rqvae": {"hidden_dims": [32], "latent_dim": 8, "num_levels": 2, "codebook_size": 8},
    "rqkmeans": {"num_levels": 2, "codebook_size": 8, "iters": 5},
}


def make(kind: str, catalog: Catalog, **overrides: Any) -> Any:
    torch.manual_seed(0)
    cfg = build(TokenizerConfig, {"kind": kind, kind: {**SMALL[kind], **overrides}})
    return build_tokenizer(cfg, catalog.dims)


@pytest.mark.parametrize("kind", ["simcit", "rqvae"])
def test_training_loss_shapes_and_gradients_reach_every_parameter(kind: str, catalog: Catalog) -> None:
    model = make(kind, catalog)
    assert isinstance(model, TrainableTokenizer) and isinstance(model, Tokenizer)
    batch = catalog.rows(torch.arange(64), with_partner=True)
    loss, metrics = model.training_loss(batch, 0, 10)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert all(isinstance(v, float) for v in metrics.values())
    assert {"loss", "perplexity_l0", "perplexity_l1"} <= set(metrics)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0] == []  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["simcit", "rqvae", "rqkmeans"])
def test_encode_latent_and_distance_agree(kind: str, catalog: Catalog) -> None:
    model = make(kind, catalog)
    batch = catalog.rows(torch.arange(200))
    if isinstance(model, RQKMeans):
        assert isinstance(model, FittableTokenizer)
        with pytest.raises(RuntimeError, match="before fit"):
            model.encode(batch)
        model.fit([batch])
    else:
        model.init_codebooks(batch)
    model.train()
    codes, dist = model.encode_with_distance(batch)
    assert model.training  # encode leaves the train/eval mode as it was
    assert codes.shape == (200, 2) and codes.dtype == torch.int64 and int(codes.max()) < 8
    assert dist.shape == (200,) and dist.dtype == torch.float32
    assert torch.equal(model.encode(batch), codes)
    z = model.latent(batch)
    books = model.codebooks()
    assert books.shape == (2, 8, z.shape[1])
    recon = books[0][codes[:, 0]] + books[1][codes[:, 1]]
    torch.testing.assert_close(dist, (z - recon).pow(2).sum(1), rtol=1e-4, atol=1e-4)
    # the code of each level is the argmin over that level's codebook of the running residual
    first = torch.cdist(z, books[0]).argmin(1)
    assert torch.equal(first, codes[:, 0])


def test_missing_modality_is_masked_out_of_fusion(catalog: Catalog) -> None:
    model: SimCIT = make("simcit", catalog)
    with torch.no_grad():
        model.fusion_query.normal_()  # non-uniform fusion weights
    batch = catalog.rows(torch.arange(8))
    batch["emb_text"] = batch["emb_text"].clone()
    batch["emb_text"][0] = float("nan")
    z_m, present = model.encode_modalities(batch)
    assert present[0].tolist() == [True, True, False] and present[1:].all()  # sorted: cf, image, text
    z, weights = model.fuse(z_m, present)
    assert weights[0, 2] == 0 and torch.isfinite(z).all()
    logits = z_m[0, :2] @ model.fusion_query
    manual = torch.nn.functional.normalize((torch.softmax(logits, 0)[:, None] * z_m[0, :2]).sum(0), dim=0)
    torch.testing.assert_close(z[0], manual)
    loss, _ = model.training_loss(batch, 0, 1)
    assert torch.isfinite(loss)
    # a row with no modality at all still gets a finite latent
    for m in catalog.dims:
        batch[m][1] = float("nan")
    assert torch.isfinite(model.latent(batch)).all()


def test_pair_view_and_its_ddp_friendly_absence(catalog: Catalog) -> None:
    model: SimCIT = make("simcit", catalog)
    with_pairs = catalog.rows(torch.arange(64), with_partner=True)
    assert (with_pairs[PARTNER_ID] >= 0).any() and (with_pairs[PARTNER_ID] < 0).any()
    _, metrics = model.training_loss(with_pairs, 0, 1)
    assert "loss_view_pair" in metrics and metrics["loss_view_pair"] > 0
    without = catalog.rows(torch.arange(64))
    loss, metrics = model.training_loss(without, 0, 1)
    assert "loss_view_pair" not in metrics
    loss.backward()
    assert model.pair_head is not None
    for p in model.pair_head.parameters():  # a zero gradient, not None: DDP needs every parameter used
        assert p.grad is not None and p.grad.abs().sum() == 0
    for key in list(with_pairs):
        if key.startswith(partner_column("")):
            assert with_pairs[key].shape[0] == 64


def test_temperature_schedule_reaches_the_quantiser(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    model: SimCIT = make("simcit", catalog, temperature={"start": 0.5, "floor": 0.05, "kind": "cosine"})
    seen: list[float] = []
    original = model.quantizer.soft_quantize

    def spy(z: torch.Tensor, temperature: float, *args: Any, **kwargs: Any) -> Any:
        seen.append(temperature)
        return original(z, temperature, *args, **kwargs)

    monkeypatch.setattr(model.quantizer, "soft_quantize", spy)
    batch = catalog.rows(torch.arange(32))
    reported = [model.training_loss(batch, step, 100)[1]["temperature"] for step in (0, 50, 99)]
    expected = [gumbel_temperature(model.cfg.temperature, s, 100) for s in (0, 50, 99)]
    assert seen == pytest.approx(expected) and reported == pytest.approx(expected)
    assert seen[0] == pytest.approx(0.5) and seen[-1] == pytest.approx(0.05) and seen[0] > seen[1] > seen[2]


@pytest.mark.parametrize("kind", ["simcit", "rqvae"])
def test_two_ranks_with_gathered_keys_equal_one_process(kind: str, catalog: Catalog) -> None:
    extra = {"gumbel_scale": 0.0, "commitment_weight": 0.5, "codeword_weight": 0.1} if kind == "simcit" else {}
    model = make(kind, catalog, **extra)
    batch = catalog.rows(torch.arange(48), with_partner=kind == "simcit")
    model.init_codebooks(batch)

    full, _ = model.training_loss(batch, 3, 10)
    model.zero_grad()
    full.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}  # type: ignore[union-attr]
    model.zero_grad()

    def rank_loss(rank: int, gather: Any) -> torch.Tensor:
        local = {k: v[rank * 24:(rank + 1) * 24] for k, v in batch.items()}
        return model.training_loss(local, 3, 10, gather)[0]

    split = torch.stack(run_ranks(2, rank_loss)).mean()  # DDP: average of the ranks' gradients
    split.backward()
    torch.testing.assert_close(split, full, rtol=1e-5, atol=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_first_training_batch_initialises_codebooks_from_gathered_latents(catalog: Catalog) -> None:
    batch = catalog.rows(torch.arange(64))
    ref = make("simcit", catalog)
    ref.training_loss(batch, 0, 1)  # single process: k-means on the whole batch

    models = [make("simcit", catalog) for _ in range(2)]

    def rank_step(rank: int, gather: Any) -> None:
        models[rank].training_loss({k: v[rank * 32:(rank + 1) * 32] for k, v in batch.items()}, 0, 1, gather)

    run_ranks(2, rank_step)
    assert torch.equal(models[0].quantizer.codebooks, models[1].quantizer.codebooks)
    torch.testing.assert_close(models[0].quantizer.codebooks, ref.quantizer.codebooks)
    assert bool(models[0].quantizer.initialized)
    for e0, e1, e_ref in zip(models[0].encoders, models[1].encoders, ref.encoders):  # centred on the global batch
        assert torch.equal(e0[-1].bias, e1[-1].bias)
        torch.testing.assert_close(e0[-1].bias, e_ref[-1].bias, rtol=1e-5, atol=1e-6)


def _mean_pairwise_cosine(z: torch.Tensor) -> float:
    u = torch.nn.functional.normalize(z, dim=-1)
    return float((u @ u.t()).mean())


def test_first_batch_centres_each_encoders_latents(catalog: Catalog) -> None:
    batch = catalog.rows(torch.arange(200))
    first = sorted(catalog.dims)[0]
    batch[first][:50] = float("nan")  # a missing modality: its mean is over the present rows only
    deep = {"hidden_dims": [512, 256, 128], "latent_dim": 96}  # the default encoder depth
    plain = make("simcit", catalog, center_init=False, **deep)
    before = [e[-1].bias.detach().clone() for e in plain.encoders]
    plain.init_codebooks(batch)
    assert all(torch.equal(e[-1].bias, b) for e, b in zip(plain.encoders, before))
    model = make("simcit", catalog, **deep)  # same seed: the same weights before the init
    model.init_codebooks(batch)
    z_m, present = model.encode_modalities(batch)
    for i in range(len(model.modalities)):
        rows = z_m[present[:, i], i].detach()
        assert rows.shape[0] == (150 if i == 0 else 200)
        assert float(rows.mean(0).abs().max()) < 1e-5
    z_plain, z_centred = plain.latent(batch), model.latent(batch)
    assert _mean_pairwise_cosine(z_plain) > 0.5  # an untrained SiLU MLP maps items to one direction
    assert _mean_pairwise_cosine(z_centred) < 0.1


def test_build_tokenizer_concatenates_modalities_in_sorted_order(catalog: Catalog) -> None:
    model = make("rqvae", catalog)
    assert isinstance(model, RQVAE)
    x = model.inputs(catalog.rows(torch.arange(3)))
    expected = torch.cat([catalog.batch[m][:3] for m in sorted(catalog.dims)], 1)
    assert torch.equal(x, expected)
    with pytest.raises(ValueError, match="at least one modality"):
        build_tokenizer(TokenizerConfig(), {})


def test_mlp_and_heads_shapes_activations_and_gradients() -> None:
    from simcit_dist.tokenizer.layers import mlp, projection_head

    net = mlp(7, [16, 8], 5, act="relu", dropout=0.1)
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    x = torch.randn(4, 7, requires_grad=True)
    out = net(x)
    assert out.shape == (4, 5)
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in net.parameters())
    assert projection_head(5, 3, "linear")(out).shape == (4, 3)
    assert projection_head(5, 3, "mlp", "gelu")(out).shape == (4, 3)
    with pytest.raises(ValueError, match="activation must be one of"):
        mlp(3, [4], 2, act="tanh")


@pytest.mark.parametrize("options", [{"minibatch_size": 100}, {"normalize": True, "init": "random"},
                                     {"backend": "torch", "init": "kmeans++"}, {"backend": "faiss"}])
def test_rqkmeans_fit_options(options: dict[str, Any], catalog: Catalog) -> None:
    model = make("rqkmeans", catalog, **options)
    batches = [catalog.rows(torch.arange(i, i + 256)) for i in range(0, 1024, 256)]
    residuals = model.fit(batches)
    assert residuals["residual_l0"] > residuals["residual_l1"] > 0  # the residual shrinks per level
    codes = model.encode(catalog.rows(torch.arange(1024)))
    assert codes.shape == (1024, 2) and len(torch.unique(codes[:, 0])) == 8
    if options.get("normalize"):  # each modality block (sorted: cf 16, image 48, text 32) has unit norm
        z = model.latent(catalog.rows(torch.arange(4)))
        for block in torch.split(z, [16, 48, 32], dim=1):
            torch.testing.assert_close(block.norm(dim=1), torch.ones(4))
