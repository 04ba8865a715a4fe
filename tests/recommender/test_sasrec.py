"""SASRec, the ID baseline: windows, causal states, full-softmax loss and full ranking against plain
references, and training on Ray that beats most-popular on the synthetic set."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F

from simcit_dist.data.parquet_io import write_table
from simcit_dist.recommender.config import DataConfig, EvalConfig, RecommenderTrainConfig
from simcit_dist.recommender.examples import UserSequences
from simcit_dist.recommender.export import save_model
from simcit_dist.recommender.sasrec.batches import left_align, training_windows, window_batch
from simcit_dist.recommender.sasrec.config import SasrecConfig, SasrecModelConfig
from simcit_dist.recommender.sasrec.item_embeddings import write_item_embeddings
from simcit_dist.recommender.sasrec.items import item_catalog, load_item_catalog
from simcit_dist.recommender.sasrec.model import SasrecModel
from simcit_dist.recommender.sasrec.pipeline import train_and_evaluate_sasrec
from simcit_dist.recommender.sasrec.ranking import SasrecMeta, SasrecRanker, load_sasrec
from simcit_dist.recommender.sasrec.training import check_items_version
from simcit_dist.recommender.sequences import target_ranges
from simcit_dist.storage import resolve
from simcit_dist.train.config import RunSection
from tests.recommender.helpers import leaf_sid_codes, small_synthetic, write_synthetic


def sequences(lengths: list[int], seed: int = 0, num_items: int = 30) -> UserSequences:
    rng = np.random.default_rng(seed)
    items = rng.integers(0, num_items, size=sum(lengths))
    return UserSequences(np.arange(len(lengths)), np.concatenate([[0], np.cumsum(lengths)]), items)


def test_windows_predict_every_training_target_once_from_its_own_prefix() -> None:
    data = DataConfig(max_history=4)
    seqs = sequences([3, 5, 6, 11, 2, 14])  # 2 items: no training target; 11 and 14: several windows
    windows = training_windows(seqs, data)
    batch = window_batch(seqs, windows, np.arange(len(windows.user)))
    seen = []
    for w in range(len(windows.user)):
        user = int(windows.user[w])
        own = seqs.items[seqs.offsets[user]:seqs.offsets[user + 1]]
        n = int((batch.targets[w] >= 0).sum())
        first = int(windows.first[w])
        assert batch.items[w, :n].tolist() == (own[first - 1:first - 1 + n] + 1).tolist()  # inputs: one behind
        assert batch.targets[w, :n].tolist() == own[first:first + n].tolist()
        assert (batch.items[w, n:] == 0).all() and (batch.targets[w, n:] == -1).all()
        seen += [(user, p) for p in range(first, first + n)]
    lo, hi = target_ranges(seqs.lengths, data, "train")
    expected = [(u, p) for u in range(len(lo)) for p in range(lo[u], hi[u])]
    assert sorted(seen) == expected  # each training target exactly once, no valid/test target
    assert max(windows.end - windows.first) == 4


def test_left_align_keeps_the_most_recent_items_in_order() -> None:
    hist = np.array([[-1, -1, 5, 7], [1, 2, 3, 4], [-1, -1, -1, 9]])
    items, lengths = left_align(hist)
    assert lengths.tolist() == [2, 4, 1]
    assert items.tolist() == [[6, 8, 0, 0], [2, 3, 4, 5], [10, 0, 0, 0]]


@pytest.fixture(scope="module")
def model() -> SasrecModel:
    torch.manual_seed(0)
    return SasrecModel(SasrecModelConfig(hidden_dim=16, num_layers=2, num_heads=2, ffn_dim=32, dropout=0.0),
                       num_items=23, max_len=6).eval()


def test_loss_equals_per_prefix_cross_entropy(model) -> None:
    """One causal pass over a window = RecBole's one example per prefix (the model run on each prefix)."""
    seqs = sequences([7, 4, 9], seed=1, num_items=23)
    windows = training_windows(seqs, DataConfig(max_history=6))
    batch = window_batch(seqs, windows, np.arange(len(windows.user)))
    losses = []
    for w in range(len(batch.items)):
        for t in range(int((batch.targets[w] >= 0).sum())):
            prefix = batch.items[w:w + 1, :t + 1]
            state = model.states(prefix)[0, -1]
            losses.append(F.cross_entropy((state @ model.item_embed.weight[1:].T)[None], batch.targets[w, t:t + 1]))
    with torch.no_grad():
        assert float(model(batch.items, batch.targets)) == pytest.approx(float(torch.stack(losses).mean()), rel=1e-5)


def test_full_ranking_equals_brute_force_top_k(model) -> None:
    hist = np.array([[-1, -1, 3, 8], [4, 4, 0, 22], [-1, -1, -1, 17]])
    ranked = SasrecRanker(model, batch_size=2).rank(hist, 5)
    for row, h in zip(ranked, hist):
        tokens = torch.tensor([[i + 1 for i in h if i >= 0]])
        with torch.no_grad():
            scores = (model.states(tokens)[0, -1] @ model.item_embed.weight[1:].T).numpy()
        expected = sorted(range(23), key=lambda i: -scores[i])[:5]
        assert row.tolist() == expected


def test_resume_refuses_another_item_catalog(tmp_path, model) -> None:
    meta = SasrecMeta(SasrecModelConfig(hidden_dim=16, num_layers=2, num_heads=2, ffn_dim=32, dropout=0.0),
                      DataConfig(max_history=6), 23, "items-23-a")
    save_model(resolve(str(tmp_path / "model")), model.state_dict(), meta)
    check_items_version(str(tmp_path / "model"), "items-23-a")
    with pytest.raises(ValueError, match="trained on item catalog 'items-23-a', not 'items-23-b'"):
        check_items_version(str(tmp_path / "model"), "items-23-b")
    loaded, _ = load_sasrec(str(tmp_path))  # a checkpoint dir holding model/ loads too
    hist = np.array([[-1, 2, 5]])
    assert SasrecRanker(loaded).rank(hist, 4).tolist() == SasrecRanker(model).rank(hist, 4).tolist()


def test_item_catalog_is_sorted_unique_and_fingerprinted() -> None:
    a, b = item_catalog(np.array([5, 3, 9, 3])), item_catalog(np.array([9, 5, 3]))
    assert a.item_ids.tolist() == [3, 5, 9] and a.version == b.version and a.num_items == 3
    assert item_catalog(np.array([3, 5, 10])).version != a.version


@pytest.mark.slow
def test_sasrec_trains_on_ray_and_beats_most_popular(tmp_path, ray_local) -> None:
    cfg = small_synthetic(num_users=500)
    interactions, _ = write_synthetic(tmp_path, cfg)
    item_ids, _, _ = leaf_sid_codes(cfg)
    write_table(pa.table({"item_id": pa.array(item_ids, pa.int64())}), resolve(str(tmp_path / "catalog" / "part-0.parquet")))
    sasrec = SasrecConfig(
        model=SasrecModelConfig(hidden_dim=32, num_layers=1, num_heads=2, ffn_dim=64, dropout=0.1),
        data=DataConfig(max_history=10, num_partitions=2),
        train=RecommenderTrainConfig(epochs=4, batch_size=64, lr=5e-3, num_workers=2, torch_threads=1, log_every=5,
                                     deepspeed={"zero_optimization": {"stage": 2}}),
        eval=EvalConfig(ks=[5, 10], beam_size=10, num_workers=1, max_epoch_examples=None))
    report = train_and_evaluate_sasrec(interactions, str(tmp_path / "catalog"), sasrec, str(tmp_path / "out"),
                                       RunSection(storage_path=str(tmp_path / "ray"), name="sasrec-test"))
    losses = [h["train_loss"] for h in report["history"]]
    assert losses[-1] < losses[0] - 0.5, losses
    test = report["test"]
    assert test["count"] == 500
    # The synthetic users follow a strong successor chain: SASRec must see it, most-popular cannot.
    assert test["recall@10"] > test["popular/recall@10"] + 0.15, test
    assert report["selected_epoch"] == max(range(1, 5), key=lambda e: report["history"][e - 1]["valid/recall@10"])
    model, meta = load_sasrec(str(tmp_path / "out" / "model"))
    assert meta.num_items == cfg.num_items and meta.items_version == load_item_catalog(
        str(tmp_path / "catalog")).version
    assert (tmp_path / "out" / "report.md").read_text().startswith("# SASRec")
    # The selected model's item table, in the layout `convert source: embeddings` reads.
    exported = tmp_path / "out" / "item_embeddings"
    assert np.load(exported / "ids.npy").tolist() == sorted(item_ids.tolist())
    np.testing.assert_array_equal(np.load(exported / "embeddings.npy"), model.item_embed.weight[1:].detach().numpy())


def test_item_embeddings_are_the_item_rows_by_catalog_index(tmp_path, model) -> None:
    ids = np.arange(model.num_items, dtype=np.int64) * 7 + 100
    write_item_embeddings(model, ids, resolve(str(tmp_path / "emb")))
    table, got_ids = np.load(tmp_path / "emb" / "embeddings.npy"), np.load(tmp_path / "emb" / "ids.npy")
    assert table.dtype == np.float32 and got_ids.dtype == np.int64 and got_ids.tolist() == ids.tolist()
    # Row i scores item index i: the model's own full-catalog scores are states @ table.T.
    states = torch.randn(3, table.shape[1])
    torch.testing.assert_close(model.scores(states), states @ torch.from_numpy(table).T)
    with pytest.raises(ValueError, match="4 item ids for a table of"):
        write_item_embeddings(model, ids[:4], resolve(str(tmp_path / "bad")))


def test_recommender_runs_keep_at_least_two_checkpoints() -> None:
    """Ray keeps the latest checkpoint besides the best: with one, a worse last epoch evicts the best."""
    from simcit_dist.recommender.config import RecommenderRunSection
    from simcit_dist.recommender.sasrec.config import SasrecRunSection

    for section in (RecommenderRunSection, SasrecRunSection):
        with pytest.raises(ValueError, match="run.num_to_keep must be >= 2 for a recommender run"):
            section(num_to_keep=1)
        assert section().num_to_keep == 2
