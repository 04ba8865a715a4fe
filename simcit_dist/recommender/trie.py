"""Prefix trie of the valid full SIDs, stored level by level in CSR arrays (no Python dict walk).

Nodes at depth ``d`` are the distinct prefixes of length ``d`` (depth 0: the root), numbered in
lexicographic order. The children of node ``n`` at depth ``d`` are the depth ``d + 1`` nodes
``start[d][n] : start[d][n + 1]``, and ``code[d][j]`` is the local code that leads to child ``j``.
Because prefixes are sorted, ``parent * size_d + code`` is ascending over the children of a
depth, so a transition is one ``searchsorted``. A leaf (depth ``D``) numbers a distinct full
SID in key order, i.e. the same order as :attr:`SidCatalog.sorted_keys`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


class SidTrie:
    """Allowed-next-code masks and transitions for batches of beams, as tensor ops."""

    def __init__(self, codes: np.ndarray, level_sizes: Sequence[int]) -> None:
        """``codes``: (M, D) local codes of valid full SIDs (duplicates allowed)."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] != len(level_sizes):
            raise ValueError(f"codes must be (M, {len(level_sizes)}), got {codes.shape}")
        self.level_sizes = tuple(int(s) for s in level_sizes)
        self.depth = len(self.level_sizes)
        order = np.lexsort(codes.T[::-1])
        codes = codes[order]
        if len(codes):
            distinct = np.ones(len(codes), dtype=bool)
            distinct[1:] = (codes[1:] != codes[:-1]).any(axis=1)
            codes = codes[distinct]
        self.num_sids = int(len(codes))
        starts: list[torch.Tensor] = []
        child_codes: list[torch.Tensor] = []
        child_keys: list[torch.Tensor] = []
        parent = np.zeros(len(codes), dtype=np.int64)  # node id of each SID's prefix at the current depth
        num_nodes = 1
        for d, size in enumerate(self.level_sizes):
            key = parent * size + codes[:, d]  # (M,) ascending: codes are sorted lexicographically
            new = np.ones(len(key), dtype=bool)
            new[1:] = key[1:] != key[:-1]
            child_key = key[new]  # (nodes_{d+1},)
            child_parent = parent[new]
            start = np.searchsorted(child_parent, np.arange(num_nodes + 1))  # (nodes_d + 1,)
            starts.append(torch.from_numpy(start.astype(np.int64)))
            child_codes.append(torch.from_numpy(codes[new, d].copy()))
            child_keys.append(torch.from_numpy(child_key))
            parent = np.cumsum(new) - 1
            num_nodes = int(new.sum())
        self._start = starts
        self._code = child_codes
        self._key = child_keys

    @property
    def device(self) -> torch.device:
        return self._start[0].device

    def to(self, device: str | torch.device) -> SidTrie:
        """Move the CSR arrays (e.g. next to the model on a GPU); returns self."""
        self._start = [t.to(device) for t in self._start]
        self._code = [t.to(device) for t in self._code]
        self._key = [t.to(device) for t in self._key]
        return self

    def num_nodes(self, depth: int) -> int:
        return int(self._start[depth].numel() - 1) if depth < self.depth else self.num_sids

    def allowed_mask(self, depth: int, nodes: torch.Tensor) -> torch.Tensor:
        """(n,) node ids at ``depth`` -> (n, level_sizes[depth]) bool: codes that extend to a valid SID."""
        start = self._start[depth]
        lo = start[nodes]
        counts = start[nodes + 1] - lo  # (n,) children per node
        mask = torch.zeros(nodes.numel(), self.level_sizes[depth], dtype=torch.bool, device=self.device)
        total = int(counts.sum())
        if total == 0:
            return mask
        row = torch.repeat_interleave(torch.arange(nodes.numel(), device=self.device), counts, output_size=total)
        # Child j of row r is at lo[r] + (j - first slot of r): concatenated ranges without a loop.
        first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts, output_size=total)
        child = (torch.repeat_interleave(lo, counts, output_size=total) + torch.arange(total, device=self.device)
                 - first)
        mask[row, self._code[depth][child]] = True
        return mask

    def step(self, depth: int, nodes: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Node ids at ``depth + 1`` reached from ``nodes`` by ``codes`` (-1 where not a valid child)."""
        keys = self._key[depth]
        if keys.numel() == 0:
            return torch.full_like(nodes, -1)
        query = nodes * self.level_sizes[depth] + codes
        pos = torch.searchsorted(keys, query).clamp(max=keys.numel() - 1)
        return torch.where((keys[pos] == query) & (nodes >= 0), pos, torch.full_like(pos, -1))
