"""The jobs on a real multi-node Ray cluster (issue 27): a head and two worker nodes, each its own
`ray start` process group on this machine, sharing nothing but S3 (the session's moto server).
Every input, output and checkpoint is an s3:// URI; jobs go in through `ray job submit` with the
repository as working dir, as cluster/README.md submits them to KubeRay.

Placement: the head has 0 CPUs (driver, dashboard, job supervisor only). Each worker node has 3
logical CPUs and the jobs ask 2 per training worker (``train.cpus_per_worker=2``, one torch thread
each), so the 2 workers of a group can only be placed on 2 different nodes, and 1 CPU per node is
left to the Ray Data tasks that feed them. (With 1-CPU nodes and 1 CPU per worker the workers
would also be spread, but nothing would be left for the Ray Data read tasks: on a cluster the jobs
never shrink their claims (simcit_dist.cpu_claims), so the run would wait forever.)

Faults (last in the file: they kill nodes of the module's cluster and add spares): (a) a worker
node lost (its whole process tree SIGKILLed) in the middle of tokenizer training: the run continues
from its last checkpoint on S3 on the survivor and a spare node; (b) a worker node lost in the
middle of SID assignment: the (re-)run publishes SIDs byte-identical to an undisturbed run's.
(c), killing the whole job mid-publish, is not here: tests/assign covers publish idempotence
with injected failures on one node.

Seen on this cluster, not asserted: Ray Train numbers ranks by node IP, so with every node on
127.0.0.1 the workers get local_rank 0 and 1 and node_rank 0; and Ray Train's PlacementGroupCleaner
actor fails with "Found multiple active Ray instances" (its worker process has no RAY_ADDRESS and
sees several GCS servers on the machine), so placement groups of a dead controller are not reclaimed.
Timings (idle 2-core box, measured at load ~8): cluster ~40 s, tokenizer job ~60 s, assignment
~30 s each, recommender ~100 s.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from simcit_dist.assign.staging import HEARTBEAT
from simcit_dist.storage import StorageConfig, list_files, read_bytes, read_json, read_text, resolve
from tests.cluster.conftest import REPO
from tests.cluster.multi_node import RAY, LocalCluster, kill_tree, new_root, submission_id
from tests.helpers import perturb, write_catalog

pytestmark = [pytest.mark.slow, pytest.mark.s3]

WORKER_CPUS = 3  # per worker node; training workers claim 2 (see the module docstring)
TRAIN_PLACEMENT = ["train.num_workers=2", "train.cpus_per_worker=2", "train.torch_threads=1"]
N_ITEMS = 3000


def _ray_cli_missing() -> str | None:
    if not os.path.exists(RAY) and shutil.which("ray") is None:
        return f"the `ray` CLI is not installed (looked for {RAY} and on PATH)"
    return None


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env.update({"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
                "TQDM_DISABLE": "1", "AWS_EC2_METADATA_DISABLED": "true",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"})
    return env


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    reason = _ray_cli_missing()
    if reason:
        pytest.skip(reason)
    root = new_root()
    c = LocalCluster(root, _env())
    try:
        c.start_head()
        c.add_worker("node_a", WORKER_CPUS)
        c.add_worker("node_b", WORKER_CPUS)
        yield c
    finally:
        c.shutdown()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def bucket(s3_server: str) -> tuple[str, StorageConfig, list[str]]:
    """A bucket for the module: (``s3://bucket``, StorageConfig, the jobs' storage.* overrides)."""
    import uuid

    import boto3

    name = f"multinode-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=name)
    storage = StorageConfig(s3_endpoint=s3_server, s3_region="us-east-1", s3_access_key_id="testing",
                            s3_secret_access_key="testing")
    overrides = [f"storage.s3_endpoint={s3_server}", "storage.s3_region=us-east-1",
                 "storage.s3_access_key_id=testing", "storage.s3_secret_access_key=testing",
                 "storage.s3_timeout_s=30"]
    return f"s3://{name}", storage, overrides


@pytest.fixture(scope="module")
def data(bucket) -> dict[str, str]:
    """Catalog (2 small modalities) and interactions of the same synthetic items, written to S3."""
    from simcit_dist.data.parquet_io import write_table
    from simcit_dist.inputs.synthetic import SyntheticConfig, build_tree, item_chunk, user_chunk

    uri, storage, _ = bucket
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log: one line per S3 request
    cfg = SyntheticConfig(num_items=N_ITEMS, modalities={"emb_a": 8, "emb_b": 12}, latent_dim=8, branching=[4, 4],
                          level_scales=[1.0, 0.4], item_noise=0.3, num_users=300, mean_seq_len=10,
                          chunk_items=N_ITEMS, chunk_users=300, seed=0)
    tree = build_tree(cfg)
    items = item_chunk(cfg, tree, 0)
    catalog = resolve(f"{uri}/data/catalog", storage)
    for i in range(4):
        part = items.slice(i * N_ITEMS // 4, N_ITEMS // 4)
        write_table(part, catalog.child(f"part-{i:03d}.parquet"))
    write_table(user_chunk(cfg, tree, 0), resolve(f"{uri}/data/interactions", storage).child("part-000.parquet"))
    # The next day's snapshot: the first 60 items removed, the next 60 changed.
    day2 = perturb(items.slice(60), np.arange(60), scale=1.0)
    write_catalog(day2, f"{uri}/data/day2/catalog", storage, files=2)
    return {"catalog": catalog.uri, "interactions": f"{uri}/data/interactions", "day2": f"{uri}/data/day2/catalog"}


def submit(cluster: LocalCluster, *command: str, timeout: float = 420) -> str:
    """`ray job submit` of one job; returns its output (the job's log included)."""
    start = time.monotonic()
    args = [RAY, "job", "submit", "--address", cluster.dashboard, "--working-dir", ".", "--", "python", *command]
    try:
        result = subprocess.run(args, cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"{command[0]} did not finish within {timeout:.0f} s:\n{out[-6000:]}")
    output = result.stdout + result.stderr
    print(f"{command[0]}: {time.monotonic() - start:.0f} s")  # shown with -s / on failure
    assert result.returncode == 0 and "succeeded" in output, f"{' '.join(command)}:\n{output[-8000:]}"
    return output


def tokenizer_args(data: dict[str, str], uri: str, s3: list[str], name: str, steps: int, run_dir: Path,
                   *extra: str) -> list[str]:
    return ["jobs/train_tokenizer.py", "--config", "conf/tokenizer.yaml", f"data.catalog={data['catalog']}",
            "data.pairs=null", "data.holdout_fraction=0.1", "data.shuffle_buffer=512",
            "tokenizer.simcit.hidden_dims=[32]", "tokenizer.simcit.latent_dim=16", "tokenizer.simcit.proj_dim=16",
            "tokenizer.simcit.num_levels=2", "tokenizer.simcit.codebook_size=16", "train.batch_size=256",
            f"train.max_steps={steps}", "train.warmup_steps=1", "train.log_every=2", "train.checkpoint_every=4",
            *TRAIN_PLACEMENT, f"run.storage_path={uri}/ray", f"run.name={name}", f"run.run_dir={run_dir}",
            *s3, *extra]


def worker_labels(cluster: LocalCluster, output: str) -> list[str]:
    """Labels of the nodes the job's Ray Train workers (RayTrainWorker actors) ran on."""
    labels = cluster.labels_by_node_id()
    workers = cluster.job_actors(submission_id(output), "RayTrainWorker")
    return sorted(labels.get(a["node_id"], f"unlabelled node {a['node_id'][:8]}") for a in workers)


@pytest.fixture(scope="module")
def tokenizer_run(cluster: LocalCluster, bucket, data, tmp_path_factory) -> tuple[str, str]:
    """The tokenizer job, once for the module: (its `ray job submit` output, the artifact URI)."""
    uri, _, s3 = bucket
    output = submit(cluster, *tokenizer_args(data, uri, s3, "tok", 8, tmp_path_factory.mktemp("tok")))
    return output, f"{uri}/ray/tok/tokenizer"


def test_tokenizer_trains_on_two_worker_nodes_over_s3(cluster: LocalCluster, bucket, tokenizer_run) -> None:
    uri, storage, _ = bucket
    output, artifact = tokenizer_run
    placed = worker_labels(cluster, output)
    assert placed == ["node_a", "node_b"], f"training workers ran on {placed}:\n{output[-4000:]}"
    history = read_json(resolve(artifact, storage).child("training_history.json"))
    assert history["final"]["step"] == 8
    ckpts = {f.path.split("/")[-2] for f in list_files(resolve(f"{uri}/ray/tok", storage), suffix="state.pt")}
    assert "step_00000008" in ckpts


def assign_args(data: dict[str, str], artifact: str, output: str, s3: list[str], run_dir: Path,
                config: str = "conf/assign.yaml", catalog: str = "catalog") -> list[str]:
    return ["jobs/assign_sids.py", "--config", config, f"catalog={data[catalog]}", f"tokenizer={artifact}",
            f"output={output}", "num_partitions=2", "actors=2", "hit_rate_sample=0", f"run_dir={run_dir}", *s3]


@pytest.fixture(scope="module")
def first_assignment(cluster: LocalCluster, bucket, data, tokenizer_run, tmp_path_factory) -> tuple[str, str]:
    """The assignment job over the catalog, undisturbed, once for the module: (SID root, version)."""
    uri, storage, s3 = bucket
    sids = f"{uri}/sids"
    submit(cluster, *assign_args(data, tokenizer_run[1], sids, s3, tmp_path_factory.mktemp("assign")))
    return sids, read_text(resolve(sids, storage).child("LATEST")).strip()


RECOMMENDER_SMALL = ["model.d_model=32", "model.num_heads=2", "model.head_dim=16", "model.ffn_dim=64",
                     "model.num_encoder_layers=1", "model.num_decoder_layers=1", "model.dropout=0.0",
                     "data.max_history=8", "data.num_partitions=2", "train.epochs=1", "train.batch_size=64",
                     "train.warmup_steps=0", "train.log_every=20", "eval.beam_size=20", "eval.num_workers=1",
                     "eval.max_epoch_examples=100"]


def test_assign_nightly_and_recommender_over_s3(cluster: LocalCluster, bucket, data, tokenizer_run,
                                                first_assignment, tmp_path: Path) -> None:
    """assign -> nightly re-tokenization of the day-2 snapshot -> recommender on the LATEST version."""
    uri, storage, s3 = bucket
    _, artifact = tokenizer_run
    sids, first = first_assignment
    root = resolve(sids, storage)
    manifest = read_json(root.child("versions", first, "manifest.json"))
    assert manifest["counts"]["items"] == N_ITEMS, manifest["counts"]

    submit(cluster, *assign_args(data, artifact, sids, s3, tmp_path / "nightly", "conf/retokenize_nightly.yaml",
                                 "day2"))
    latest = read_text(root.child("LATEST")).strip()
    nightly = read_json(root.child("versions", latest, "manifest.json"))
    assert latest != first and nightly["previous"] == first
    assert nightly["counts"]["items"] == N_ITEMS - 60, nightly["counts"]
    assert (nightly["diff"]["removed"], nightly["diff"]["changed"]) == (60, 60), nightly["diff"]

    out = f"{uri}/recommender"
    output = submit(cluster, "jobs/train_recommender.py", "--config", "conf/recommender.yaml",
                    f"interactions={data['interactions']}", f"sid_root={sids}", f"output={out}",
                    f"run.storage_path={uri}/ray", "run.name=rec", *RECOMMENDER_SMALL, *TRAIN_PLACEMENT, *s3)
    placed = worker_labels(cluster, output)
    assert placed == ["node_a", "node_b"], f"recommender workers ran on {placed}:\n{output[-4000:]}"
    report = read_json(resolve(f"{out}/metrics.json", storage))
    assert report["sid_version"] == latest and [h["epoch"] for h in report["history"]] == [1]
    assert report["data"]["interactions_missing_sid"] > 0  # interactions with the 60 removed items
    assert report["checkpoint"].startswith(f"{uri}/ray/rec/")


# -- faults (last: they change the module's cluster) -------------------------------------------------


def submit_background(cluster: LocalCluster, log: Path, *command: str) -> subprocess.Popen:
    """`ray job submit` (it waits for the job) as a background process writing to ``log``."""
    args = [RAY, "job", "submit", "--address", cluster.dashboard, "--working-dir", ".", "--", "python", *command]
    with open(log, "w") as out:
        return subprocess.Popen(args, cwd=REPO, env=cluster.env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def finish(proc: subprocess.Popen, log: Path, timeout: float) -> str:
    """Wait for a background submission; its output. On timeout the client is killed (by pid) and the
    test fails (the job itself dies with the module's cluster)."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        pytest.fail(f"`ray job submit` did not finish within {timeout:.0f} s:\n{log.read_text()[-6000:]}")
    return log.read_text()


def wait_for(what: str, check, proc: subprocess.Popen, log: Path, timeout: float, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            pytest.fail(f"the job ended before {what}:\n{log.read_text()[-6000:]}")
        time.sleep(every)
    kill_tree(proc)
    pytest.fail(f"no {what} within {timeout:.0f} s:\n{log.read_text()[-6000:]}")


def test_worker_node_lost_mid_training_resumes_from_s3_checkpoint(cluster: LocalCluster, bucket, data,
                                                                  tmp_path: Path) -> None:
    """A worker node dies (raylet, agents and its Ray workers SIGKILLed) after the run's first
    checkpoint reached S3: Ray Train restarts the worker group (run.max_failures=1) on the surviving
    node and a spare one, restores the checkpoint from S3 and trains to the full step count."""
    uri, storage, s3 = bucket
    steps = 80  # ~10 s of training on an idle 2-core box: the kill lands well before the end
    # A spare node, up before the fault: Ray Train gives a restarted group 60 s to be placed
    # (RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S), less than a node takes to start on a busy 2-core box.
    cluster.add_worker("node_c", WORKER_CPUS)
    run = resolve(f"{uri}/ray/tok-fault", storage)
    log = tmp_path / "submit.log"
    proc = submit_background(cluster, log, *tokenizer_args(data, uri, s3, "tok-fault", steps, tmp_path / "report",
                                                           "run.max_failures=1"))

    def registered_checkpoint() -> bool:
        names = {f.path.rsplit("/", 1)[-1] for f in list_files(run)}
        return "state.pt" in names and "checkpoint_manager_snapshot.json" in names

    first: list[str] = []

    def group_started() -> bool:  # looked up before the checkpoint, so the kill follows it closely
        text = log.read_text()
        if "submitted successfully" not in text:
            return False
        labels = cluster.labels_by_node_id()
        first[:] = [labels.get(a["node_id"], "?") for a in cluster.job_actors(submission_id(text), "RayTrainWorker")
                    if a["state"] == "ALIVE"]
        return len(first) == 2

    wait_for("training worker group", group_started, proc, log, timeout=240, every=1)
    assert len(set(first)) == 2 and "?" not in first, first
    victim = first[0]
    wait_for("checkpoint on S3", registered_checkpoint, proc, log, timeout=240)
    cluster.kill(victim)
    output = finish(proc, log, timeout=300)
    assert "succeeded" in output, output[-6000:]

    final = read_json(resolve(f"{uri}/ray/tok-fault/tokenizer", storage).child("training_history.json"))["final"]
    assert final["step"] == steps and final["restores"] == 1, final
    assert 4 <= final["resumed_from_step"] < steps, final
    assert victim not in cluster.alive_labels()
    # Both attempts' workers: the first group's, then the restarted one's on the two nodes left.
    survivors = [n for n in ("node_a", "node_b", "node_c") if n != victim]
    assert worker_labels(cluster, output) == sorted(first + survivors)


def version_files(root: str, version: str, storage: StorageConfig) -> dict[str, bytes]:
    """{relative path: bytes} of a published version, manifest.json left out (it names the version,
    the output and the run's timings)."""
    vdir = resolve(root, storage).child("versions", version)
    return {f.path[len(vdir.path) + 1:]: read_bytes(f) for f in list_files(vdir) if not f.path.endswith("/manifest.json")}


def test_worker_node_lost_mid_assignment_rerun_publishes_identical_sids(cluster: LocalCluster, bucket, data,
                                                                        tokenizer_run, first_assignment,
                                                                        tmp_path: Path) -> None:
    """A worker node dies while the assignment job encodes the catalog; the job either recovers
    (Ray retries the tasks, restarts the encoder actors elsewhere) or fails and is re-run. Either way
    the published SIDs are byte-identical to the undisturbed run's."""
    uri, storage, s3 = bucket
    ref_root, ref_version = first_assignment
    cluster.add_worker("node_d", WORKER_CPUS)  # a spare, as in the training fault
    sids = f"{uri}/sids-fault"
    args = assign_args(data, tokenizer_run[1], sids, s3, tmp_path / "report")
    root = resolve(sids, storage)
    log = tmp_path / "submit.log"
    proc = submit_background(cluster, log, *args)

    def encoding() -> bool:  # the run's staging heartbeat: it is past planning, into the encode stage
        infos = root.fs.get_file_info(pafs.FileSelector(root.path, recursive=True, allow_not_found=True))
        return any(i.base_name == HEARTBEAT for i in infos)

    wait_for("staging heartbeat", encoding, proc, log, timeout=240, every=0.3)
    labels = cluster.labels_by_node_id()
    alive = cluster.alive_labels()
    busy = Counter(labels.get(a["node_id"]) for a in cluster.job_actors(submission_id(log.read_text()))
                   if a["state"] == "ALIVE")
    victim = max((n for n in alive if n != "head"), key=lambda n: busy.get(n, 0))
    cluster.kill(victim)
    output = finish(proc, log, timeout=300)
    if "succeeded" not in output:  # the job gave up: the same command again
        submit(cluster, *args)
    version = read_text(root.child("LATEST")).strip()
    assert version.split("-")[0] == ref_version.split("-")[0]  # v00001 in both roots
    ref, got = version_files(ref_root, ref_version, storage), version_files(sids, version, storage)
    assert sorted(got) == sorted(ref) and any(name.endswith(".parquet") for name in ref)
    assert [n for n in ref if ref[n] != got[n]] == []
    ref_m = read_json(resolve(ref_root, storage).child("versions", ref_version, "manifest.json"))
    got_m = read_json(root.child("versions", version, "manifest.json"))
    for key in ("counts", "code_counts", "max_suffix", "tokenizer_hash"):
        assert got_m[key] == ref_m[key], key
