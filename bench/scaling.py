"""AL-GR (250M items) wall time and cost estimates from the measured benchmark results.

    python bench/scaling.py [--results bench/results]     # markdown tables for docs/scaling.md

Measured inputs come from ``<results>/*.json`` (this machine, CPU). Everything about GPUs,
networks and prices is an ASSUMPTION listed in ``ASSUMED`` and printed with the tables; the FLOP
counts are analytic (from the model definition), and are checked against the CPU measurement.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

ALGR = {"items": 250e6, "dim": 512, "hidden": [512, 256, 128], "latent": 96, "proj": 96, "levels": 3,
        "codebook": 8192, "global_batch": 65536, "views": 2}  # conf/tokenizer_algr.yaml: emb + pair view
BENCH_MODEL = {"dim": 512, "hidden": [512, 256, 128], "latent": 96, "proj": 96, "levels": 3, "codebook": 256,
               "views": 1}  # SimCITConfig() defaults on the benchmark catalog (no pair view)
ASSUMED = {
    "gpu_fp32_tflops": {"A100": 19.5 * 0.6, "H100": 67.0 * 0.6},  # 60 % of peak FP32 (loss/quantizer run in fp32)
    "gpu_usd_per_hour": {"A100": 4.10, "H100": 12.29},  # on-demand list price per GPU (8-GPU instances / 8)
    "cpus_per_gpu_worker": 8,  # Ray Data decode threads beside each GPU worker
    "network_gb_per_s_per_worker": 5.0,  # S3 + collective bandwidth share per GPU (400 Gb/s per 8-GPU node)
    "cpu_usd_per_vcpu_hour": 0.045,  # compute-optimised on-demand
}
PAIR_ROWS_PER_ITEM = 2.0  # pair-view rows per item when no e2e run measured it (each pair counts both ways)
WORKERS = (8, 16, 32, 64)


def load(results: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for f in sorted(results.glob("*.json")):
        data = json.loads(f.read_text())
        out[data["name"]] = {fig["name"]: fig["value"] for fig in data["figures"]} | {"_raw": data}
    return out


def encoder_macs(m: dict[str, Any]) -> float:
    dims = [m["dim"], *m["hidden"], m["latent"]]
    return float(sum(a * b for a, b in zip(dims[:-1], dims[1:])))


def train_flops_per_row(m: dict[str, Any], global_batch: float, pair: bool) -> float:
    """Forward + backward FLOPs of one training row (= 3 x forward, 2 FLOPs per MAC).

    encoder (item, and partner with the pair view) + soft quantisation (distances and the weighted
    codeword sum: 2 x L x K x D) + heads + NT-Xent: the row's queries against all ``global_batch``
    keys, one GEMM for anchors vs anchors and two per view (a->b, whose columns also give b->a, and
    b->b; see ``simcit_dist/tokenizer/losses.py``), P wide each.
    """
    enc = encoder_macs(m) * (2 if pair else 1)
    quant = 2 * m["levels"] * m["codebook"] * m["latent"]
    heads = (1 + m["views"]) * m["latent"] * m["proj"]
    loss = (1 + 2 * m["views"]) * global_batch * m["proj"]
    return 3 * 2 * (enc + quant + heads + loss)


def encode_flops_per_item(m: dict[str, Any]) -> float:
    """Hard encode for SID assignment: encoder + L levels of distances to K codewords (forward only)."""
    return 2 * (encoder_macs(m) + m["levels"] * m["codebook"] * m["latent"])


def tokenizer_epoch(n: int, local_fixed: bool, gpu: str, measured: dict[str, Any]) -> dict[str, float]:
    """Estimated seconds per epoch on ``n`` GPU workers: max(compute, input) + gather (not overlapped)."""
    a = ASSUMED
    global_batch = 4096 * n if local_fixed else ALGR["global_batch"]
    local = global_batch / n
    rows = ALGR["items"] * measured["pair_rows_per_item"]
    steps = rows / global_batch
    compute = local * train_flops_per_row(ALGR, global_batch, pair=True) / (a["gpu_fp32_tflops"][gpu] * 1e12)
    row_bytes = 2 * (ALGR["dim"] * 4 + 8)  # item + partner embeddings and ids
    decode_rate = measured["read_items_per_s_per_core"] * a["cpus_per_gpu_worker"]  # rows/s per worker
    input_s = local / min(decode_rate, a["network_gb_per_s_per_worker"] * 1e9 / row_bytes)
    # features (B, 1 + V, P) all-gathered and reduce-scattered back, (V, N) column logsumexps all-to-all both ways
    gather_bytes = 2 * global_batch * ((1 + ALGR["views"]) * ALGR["proj"] + ALGR["views"]) * 4
    gather = gather_bytes / (a["network_gb_per_s_per_worker"] * 1e9)
    step = max(compute, input_s) + gather
    hours = steps * step / 3600
    return {"workers": n, "global_batch": global_batch, "step_ms": 1e3 * step, "compute_ms": 1e3 * compute,
            "input_ms": 1e3 * input_s, "gather_ms": 1e3 * gather, "epoch_h": hours,
            "usd": hours * n * a["gpu_usd_per_hour"][gpu]}


def nightly(n: int, gpu: str, measured: dict[str, Any]) -> dict[str, float]:
    """Nightly re-tokenization on ``n`` GPU actors (+ their CPUs for the exchanges)."""
    a = ASSUMED
    items = ALGR["items"]
    encode = items * encode_flops_per_item(ALGR) / (n * a["gpu_fp32_tflops"][gpu] * 1e12)
    read = items / (n * a["cpus_per_gpu_worker"] * measured["read_items_per_s_per_core"])
    cpus = n * a["cpus_per_gpu_worker"]
    resolve = items * measured["retokenize_us_per_item"] * 1e-6 / cpus
    seconds = max(encode, read) + resolve
    return {"workers": n, "encode_s": encode, "read_s": read, "resolve_s": resolve, "total_min": seconds / 60,
            "usd": seconds / 3600 * n * a["gpu_usd_per_hour"][gpu]}


def measured_inputs(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    tok, assign, e2e = results.get("tokenizer", {}), results.get("assign", {}), results.get("e2e", {})
    tok_stage = (e2e.get("_raw") or {}).get("details", {}).get("stages", {}).get("tokenizer", {})
    machine = (tok.get("_raw") or assign.get("_raw") or {}).get("machine", {})
    cores = machine.get("physical_cores") or machine.get("cpu_count") or 1
    # The tokenizer bench's read collates to tensors (what training consumes); without it, the assign
    # bench's read of the same 512-d layout (numpy batches) stands in.
    read = tok.get("read_local_items_per_s") or assign.get("read_items_per_s") or math.nan
    inmem = tok.get("inmem_ddp_items_per_s") or math.nan
    batch = (tok.get("_raw") or {}).get("details", {}).get("setup", {}).get("global_batch", 8192)
    flops = train_flops_per_row(BENCH_MODEL, batch, pair=False)
    return {"cores": cores, "read_items_per_s_per_core": read / cores, "inmem_items_per_s": inmem, "batch": batch,
            "cpu_gflops_achieved": inmem * flops / 1e9, "bench_flops_per_row": flops,
            "retokenize_us_per_item": assign.get("retokenize_us_per_item_large") or math.nan,
            "resolve_us_per_item": assign.get("resolve_us_per_item_large") or math.nan,
            "encode_items_per_s_cpu": assign.get("single_process_items_per_s") or math.nan,
            "gather_overhead_cpu": tok.get("gather_overhead"), "machine": machine,
            "pair_rows_per_item": tok_stage.get("pair_view_rows_per_item") or PAIR_ROWS_PER_ITEM}


def _row(d: dict[str, float]) -> str:
    return "| " + " | ".join(f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}" for v in d.values()) + " |"


def markdown(results: dict[str, dict[str, Any]]) -> str:
    m = measured_inputs(results)
    out = ["### Measured inputs (this machine)\n",
           f"- bare read, 512-d rows: {m['read_items_per_s_per_core']:,.0f} rows/s per physical core "
           f"({m['cores']} cores)",
           f"- in-memory DDP training, default model, global batch {m['batch']:,}: {m['inmem_items_per_s']:,.0f} rows/s = "
           f"{m['cpu_gflops_achieved']:.0f} GFLOP/s at {m['bench_flops_per_row'] / 1e6:.1f} MFLOP per row (analytic)",
           f"- nightly resolution logic: {m['retokenize_us_per_item']:.2f} us/item per CPU "
           f"(full assignment: {m['resolve_us_per_item']:.2f})",
           f"- single-process encode (K=256): {m['encode_items_per_s_cpu']:,.0f} items/s on {m['cores']} cores",
           f"- pair-view rows per item (synthetic, 1 pair per item): {m['pair_rows_per_item']:.2f}\n",
           "### Estimated (assumptions: " + json.dumps(ASSUMED) + ")\n",
           f"AL-GR training row: {train_flops_per_row(ALGR, ALGR['global_batch'], True) / 1e6:.0f} MFLOP at global "
           f"batch {ALGR['global_batch']:,} (loss share "
           f"{1 - train_flops_per_row(ALGR, 0, True) / train_flops_per_row(ALGR, ALGR['global_batch'], True):.0%}); "
           f"encode: {encode_flops_per_item(ALGR) / 1e6:.1f} MFLOP per item.\n"]
    for gpu in ("A100", "H100"):
        for local_fixed in (False, True):
            label = "local batch 4096 (global grows with workers)" if local_fixed else "global batch 65,536"
            out.append(f"\nTokenizer epoch, {gpu}, {label}:\n")
            rows = [tokenizer_epoch(n, local_fixed, gpu, m) for n in WORKERS]
            out.append("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
            out.extend(_row(r) for r in rows)
        out.append(f"\nNightly re-tokenization, {gpu}:\n")
        rows = [nightly(n, gpu, m) for n in WORKERS]
        out.append("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
        out.extend(_row(r) for r in rows)
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", default=str(REPO / "bench" / "results"))
    args = parser.parse_args()
    print(markdown(load(Path(args.results))))


if __name__ == "__main__":
    main()
