"""Environment variables our processes should start with (read by PyTorch before it allocates).

``THP_MEM_ALLOC_ENABLE=1`` makes PyTorch's CPU allocator back large tensors with transparent huge
pages (where the kernel's THP mode is ``madvise`` or ``always``; elsewhere it changes nothing).
The contrastive loss allocates (B, N) float buffers of 100+ MB every step; with 4 KB pages each
fresh buffer costs tens of milliseconds of page faults, more than a pass of arithmetic over it.
Jobs pass these to a local Ray's workers (``jobs/_common.py``), the container image sets them
(``cluster/Dockerfile``), and the benchmarks start their processes with them.
"""

from __future__ import annotations

WORKER_ENV_VARS: dict[str, str] = {"THP_MEM_ALLOC_ENABLE": "1"}
