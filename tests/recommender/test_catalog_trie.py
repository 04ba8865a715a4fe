from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from simcit_dist.recommender.catalog import BOS, NUM_SPECIAL, PAD, SidCatalog, SidLayout, catalog_from_table
from simcit_dist.recommender.trie import SidTrie
from simcit_dist.sids.table import SIDTableError, read_sid_table
from simcit_dist.storage import resolve
from tests.recommender.helpers import write_sid_table


def random_codes(rng: np.random.Generator, n: int, sizes: tuple[int, ...]) -> np.ndarray:
    return np.stack([rng.integers(0, s, n) for s in sizes], axis=1)


def test_layout_tokens_and_keys() -> None:
    layout = SidLayout((4, 4, 3))
    assert layout.level_offsets == (NUM_SPECIAL, NUM_SPECIAL + 4, NUM_SPECIAL + 8)
    assert layout.vocab_size == NUM_SPECIAL + 11
    codes = np.array([[1, 2, 0], [3, 3, 2]])
    assert layout.tokens(codes).tolist() == [[3, 8, 10], [5, 9, 12]]
    assert layout.keys(codes).tolist() == [1 * 12 + 2 * 3 + 0, 3 * 12 + 3 * 3 + 2]
    assert {PAD, BOS} == {0, 1}
    with pytest.raises(ValueError, match="int64"):
        SidLayout((2**21, 2**21, 2**21))


def test_catalog_from_published_table(tmp_path) -> None:
    root = resolve(str(tmp_path / "sids"))
    ids = np.array([30, 10, 20, 40])
    codes = np.array([[1, 2], [0, 1], [1, 2], [3, 3]])
    suffix = np.array([0, 0, 1, 0])
    write_sid_table(root, ids, codes, suffix, codebook_size=4, files=2)
    table, manifest = read_sid_table(root.uri)
    cat = catalog_from_table(table, manifest)
    assert cat.layout.level_sizes == (4, 4, 2)
    assert cat.item_ids.tolist() == [10, 20, 30, 40]
    assert cat.index_of(np.array([20, 99, 40])).tolist() == [1, -1, 3]
    assert cat.codes[cat.index_of(np.array([30]))[0]].tolist() == [1, 2, 0]
    assert cat.item_tokens(np.array([-1, 0])).tolist() == [[PAD] * 3, [2 + 0, 6 + 1, 10 + 0]]


def test_items_of_keys_is_item_level_with_shared_sids() -> None:
    # items 0 and 2 share SID (1, 1, 0); item 1 is alone.
    cat = SidCatalog(SidLayout((2, 2, 1)), np.array([5, 6, 7]), np.array([[1, 1, 0], [0, 1, 0], [1, 1, 0]]))
    keys = cat.layout.keys(np.array([[[1, 1, 0], [0, 0, 0], [0, 1, 0]]]))  # (1, 3): shared, unknown, item 1
    valid = np.array([[True, True, True]])
    assert cat.items_of_keys(keys, valid, 4).tolist() == [[0, 2, 1, -1]]
    assert cat.items_of_keys(keys, valid, 2).tolist() == [[0, 2]]
    assert cat.items_of_keys(keys, np.array([[False, True, True]]), 4).tolist() == [[1, -1, -1, -1]]


def test_catalog_rejects_bad_tables() -> None:
    with pytest.raises(SIDTableError, match="outside"):
        SidCatalog(SidLayout((2, 1)), np.array([1]), np.array([[2, 0]]))
    with pytest.raises(SIDTableError, match="duplicate item_id"):
        SidCatalog(SidLayout((2, 1)), np.array([1, 1]), np.array([[0, 0], [1, 0]]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trie_masks_and_steps_match_a_brute_force_prefix_set(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = (5, 4, 3)
    codes = random_codes(rng, 25, sizes)
    trie = SidTrie(codes, sizes)
    valid = {tuple(r) for r in codes.tolist()}
    assert trie.num_sids == len(valid)
    # Walk every prefix of length d that exists (and a few that do not) and compare.
    frontier = {(): 0}
    for depth, size in enumerate(sizes):
        prefixes = list(frontier)
        nodes = torch.tensor([frontier[p] for p in prefixes])
        mask = trie.allowed_mask(depth, nodes)
        nxt = {}
        for row, prefix in enumerate(prefixes):
            expected = {s[depth] for s in valid if s[:depth] == prefix}
            assert set(torch.nonzero(mask[row]).flatten().tolist()) == expected
            for code in range(size):
                child = int(trie.step(depth, nodes[row:row + 1], torch.tensor([code]))[0])
                assert (child >= 0) == (code in expected)
                if child >= 0:
                    nxt[prefix + (code,)] = child
        assert sorted(nxt.values()) == list(range(trie.num_nodes(depth + 1)))
        frontier = nxt
    # Leaves number the distinct SIDs in lexicographic (key) order.
    assert [p for p, _ in sorted(frontier.items(), key=lambda kv: kv[1])] == sorted(valid)


def test_trie_of_all_codes_allows_everything() -> None:
    sizes = (2, 3)
    codes = np.array(list(itertools.product(range(2), range(3))))
    trie = SidTrie(codes, sizes)
    assert trie.allowed_mask(1, torch.tensor([0, 1])).all()
