"""The GPU check (issue 26): every CUDA path of the project, timed on one GPU, in one JSON.

    python bench/gpu_check.py --out bench/results/gpu/gpu_check.json   # on a machine with a GPU
    python bench/gpu_check.py --dry-run --out /tmp/gpu_check.json      # CPU: plumbing and JSON shape

Run it through ``bench/gpu_check.sh``, which sets up a CUDA build of torch first. Sections, each
timed side by side in this one process:

- ``cuda_tests``: ``pytest tests/recommender/test_gpu.py`` (beam search on the GPU vs CPU,
  DeepSpeed bf16 ZeRO-2/3 over nccl, AL-GR-size constrained beam search);
- ``tokenizer_step``: one SimCIT training step at the public reference's published size (3
  modalities, batch 256 and 4,096) on the GPU vs the same step on this machine's CPU, and vs the
  public SimCIT step on the GPU when ``SIMCIT_REFERENCE_DIR`` points at its checkout;
- ``assign_encode``: items/s of what one GPU encode actor runs (``assign.encode.encode_table``);
- ``recommender``: training step examples/s (plain AdamW, and bf16 autocast) and constrained
  beam-search decode users/s at the AL-GR vocabulary;
- ``peak_gpu_memory_gb``.

Without a GPU (and without ``--dry-run``) it stops at once with one line saying so. ``--dry-run``
runs every section on the CPU at tiny sizes (the CUDA tests are skipped) so CI checks the script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import torch  # noqa: E402

from bench.bench_recommender import random_batch, random_sids  # noqa: E402
from bench.bench_tokenizer import (  # noqa: E402
    REFERENCE_ENV,
    _random_inputs,
    load_reference,
    our_reference_model,
    our_step,
    reference_step,
)
from simcit_dist.data.schemas import embeddings_to_arrow  # noqa: E402
from simcit_dist.tokenizer.train_utils import adamw  # noqa: E402

SECTIONS = ("environment", "cuda_tests", "tokenizer_step", "assign_encode", "recommender", "peak_gpu_memory_gb")


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    m = re.search(r"model name\s*:\s*(.+)", text)
    return m.group(1).strip() if m else "unknown"


def environment(device: torch.device) -> dict[str, Any]:
    env = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
           "device": str(device), "cpu": cpu_model(), "cpu_count": os.cpu_count(), "python": platform.python_version()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                   bf16_supported=torch.cuda.is_bf16_supported())
    return env


def _timed(fn: Callable[[], Any], steps: int, device: torch.device) -> float:
    """Median seconds of ``fn`` over ``steps`` calls after one warm-up (GPU work waited for)."""
    fn()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return median(times)


def cuda_tests(dry_run: bool) -> dict[str, Any]:
    if dry_run:
        return {"status": "skipped (dry run: no GPU)"}
    start = time.time()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                          "tests/recommender/test_gpu.py"], cwd=REPO, capture_output=True, text=True, timeout=300)
    summary = (out.stdout.strip().splitlines() or [""])[-1]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}
    return {"status": "ok" if out.returncode == 0 else "failed", "summary": summary, **counts,
            "seconds": round(time.time() - start, 1), "tail": out.stdout.splitlines()[-15:]}


def tokenizer_step(device: torch.device, batches: tuple[int, ...], steps: int) -> dict[str, Any]:
    """Our SimCIT step on ``device`` and on the CPU; the public reference on ``device`` if present."""
    reference_dir = os.environ.get(REFERENCE_ENV)
    out: dict[str, Any] = {"reference": reference_dir or f"not measured (set {REFERENCE_ENV})"}
    for batch in batches:
        row: dict[str, Any] = {}
        for where in dict.fromkeys([device, torch.device("cpu")]):
            torch.manual_seed(0)
            model = our_reference_model(symmetric=True).to(where)
            _, ours = _random_inputs(batch, seed=batch)
            inputs = {k: v.to(where) for k, v in ours.items()}
            opt = adamw(model.parameters(), lr=1e-3, weight_decay=1e-4)
            secs = _timed(lambda m=model, o=opt, b=inputs: our_step(m, o, b), steps, where)
            row[f"ours_{where.type}_samples_per_s"] = batch / secs
        if reference_dir:
            make, _ = load_reference(reference_dir)
            ref = make().to(device).train()
            ref_inputs, _ = _random_inputs(batch, seed=batch)
            ref_inputs = {k: v.to(device) for k, v in ref_inputs.items()}
            opt = torch.optim.AdamW(ref.parameters(), lr=2e-4, weight_decay=1e-3)
            secs = _timed(lambda r=ref, o=opt, b=ref_inputs: reference_step(r, o, b), steps, device)
            row[f"reference_{device.type}_samples_per_s"] = batch / secs
            row["ours_vs_reference"] = row[f"ours_{device.type}_samples_per_s"] / row[f"reference_{device.type}_samples_per_s"]
        if device.type == "cuda":
            row["gpu_vs_cpu"] = row["ours_cuda_samples_per_s"] / row["ours_cpu_samples_per_s"]
        out[f"b{batch}"] = row
    return out


def assign_encode(device: torch.device, items: int, batch: int) -> dict[str, Any]:
    """items/s of the encode actor's work: Arrow batch -> codes (+ 8 capacity candidates)."""
    from simcit_dist.assign.encode import encode_table
    from simcit_dist.tokenizer import SimCITConfig, TokenizerConfig, build_tokenizer

    dims = {"emb": 512}  # AL-GR: one 512-d multimodal embedding
    tok = build_tokenizer(TokenizerConfig(kind="simcit", simcit=SimCITConfig(num_levels=3, codebook_size=8192
                                                                            if device.type == "cuda" else 256)),
                          dims).to(device).eval()
    rng = np.random.default_rng(0)
    table = pa.table({"item_id": pa.array(np.arange(batch, dtype=np.int64)),
                      "emb": embeddings_to_arrow(rng.standard_normal((batch, 512)).astype(np.float32))})
    secs = _timed(lambda: encode_table(tok, table, ["emb"], 8, device), max(1, items // batch), device)
    return {"items_per_s": batch / secs, "batch": batch, "codebook_size": tok.codebooks()[0].shape[0]}


def recommender(device: torch.device, smoke: bool, steps: int, users: int) -> dict[str, Any]:
    from bench.bench_recommender import model_and_layout
    from simcit_dist.recommender.beam import beam_search
    from simcit_dist.recommender.engine import build_model
    from simcit_dist.recommender.trie import SidTrie

    model_cfg, layout = model_and_layout(smoke)
    codes = random_sids(layout, 20_000 if smoke else 1_000_000, seed=0)
    model = build_model(model_cfg, layout, 20, seed=0).to(device)
    batch = 64 if smoke else 256
    data = random_batch(layout, codes, batch, seed=1)
    src, tgt_in, tgt = (t.to(device) for t in (data.src, data.tgt_in, data.tgt_codes))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(bf16: bool) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(src, tgt_in, tgt)  # mean cross-entropy over the SID positions
        opt.zero_grad()
        loss.backward()
        opt.step()

    out: dict[str, Any] = {"model": model_cfg.__dict__, "level_sizes": layout.level_sizes, "batch": batch}
    out["train_fp32_examples_per_s"] = batch / _timed(lambda: step(False), steps, device)
    if device.type == "cpu" or torch.cuda.is_bf16_supported():
        out["train_bf16_examples_per_s"] = batch / _timed(lambda: step(True), steps, device)
    model.eval()
    trie = SidTrie(codes, layout.level_sizes).to(device)
    decode_batch = 16 if smoke else 256
    srcs = [random_batch(layout, codes, decode_batch, seed=10 + i).src.to(device)
            for i in range(max(1, users // decode_batch))]
    with torch.no_grad():
        secs = _timed(lambda: [beam_search(model, s, 20, trie) for s in srcs], 1, device)
    out["decode_users_per_s"] = decode_batch * len(srcs) / secs
    out["decode_beam"] = 20
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU only, tiny sizes: check the plumbing")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "gpu" / "gpu_check.json"))
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit(f"gpu_check failed: no CUDA GPU (torch {torch.__version__}, built with CUDA {torch.version.cuda}, "
                 "torch.cuda.is_available() is False); use --dry-run to check the script on a CPU")
    device = torch.device("cpu" if args.dry_run else "cuda")
    small = args.dry_run
    start = time.time()
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "dry_run": small,
                              "command": " ".join([Path(sys.executable).name, *sys.argv])}
    result["environment"] = environment(device)
    result["cuda_tests"] = cuda_tests(small)
    result["tokenizer_step"] = tokenizer_step(device, (256,) if small else (256, 4096), 2 if small else 20)
    result["assign_encode"] = assign_encode(device, 2048 if small else 500_000, 1024 if small else 65_536)
    result["recommender"] = recommender(device, smoke=small, steps=2 if small else 20, users=32 if small else 4096)
    result["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None
    result["seconds"] = round(time.time() - start, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
