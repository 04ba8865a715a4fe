"""Offline validation of cluster/k8s: every manifest file and rendered overlay passes cluster/validate.py
(KubeRay CRD schemas, operator and project rules, core kinds, references), every entrypoint runs a job
with valid config overrides, the overlays differ as documented, and broken manifests are rejected."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import yaml

from simcit_dist.config_loader import ConfigError, load_config
from tests.cluster.conftest import REPO, validate
from tests.jobs_registry import config_class_of

BROKEN = Path(__file__).with_name("data") / "broken-rayjobs.yaml"


def job_specs(docs: list) -> list[tuple[str, dict]]:
    """(where, RayJob spec) of every RayJob and RayCronJob jobTemplate among the documents."""
    out = []
    for doc in docs:
        if doc.kind == "RayJob":
            out.append((doc.where, doc.body["spec"]))
        elif doc.kind == "RayCronJob":
            out.append((doc.where, doc.body["spec"]["jobTemplate"]))
    return out


# Discovered from the manifests, so a new RayJob or schedule is checked without touching this file.
MANIFEST_JOBS = [s for p in validate.manifest_files() for s in job_specs(validate.load_documents(p))]


@functools.cache
def config_class(job: str) -> type:
    return config_class_of(job)


def load_entrypoint_config(spec: dict, configmaps: dict) -> object:
    """The job's typed config exactly as the entrypoint builds it (the project's own loader)."""
    command = validate.job_command(spec, configmaps)
    return load_config(config_class(command.job), REPO / command.config, command.overrides)


@pytest.mark.parametrize("path", validate.manifest_files(), ids=lambda p: str(p.relative_to(validate.K8S)))
def test_manifest_file_is_valid(schemas: dict, path: Path) -> None:
    assert validate.check_path(path, schemas) == []


def test_every_manifest_file_is_a_resource_of_its_kustomization() -> None:
    for path in validate.manifest_files():
        kustomization = yaml.safe_load((path.parent / "kustomization.yaml").read_text())
        assert path.name in kustomization.get("resources", []), f"{path} is not used by {path.parent}"


@pytest.mark.parametrize("where,spec", MANIFEST_JOBS, ids=[w.split(" ")[-1].rstrip(")") for w, _ in MANIFEST_JOBS])
def test_entrypoint_runs_a_job_with_valid_config_overrides(where: str, spec: dict) -> None:
    configmaps = validate.configmaps_of([])
    command = validate.job_command(spec, configmaps)
    assert (REPO / command.job).is_file() and (REPO / command.config).is_file()
    cfg = load_entrypoint_config(spec, configmaps)
    # every URI an entrypoint sets lands under the deployment's data root
    root = configmaps[validate.STORAGE_CONFIGMAP]["SIMCIT_DATA_ROOT"]
    for override in command.overrides:
        value = override.split("=", 1)[1]
        assert not value.startswith("s3://") or value.startswith(root + "/"), f"{where}: {override}"
    assert cfg is not None


def test_the_jobs_of_the_issue_have_manifests() -> None:
    configmaps = validate.configmaps_of([])
    commands = {(c.job, c.config) for c in (validate.job_command(s, configmaps) for _, s in MANIFEST_JOBS)}
    assert {("jobs/train_tokenizer.py", "conf/tokenizer_algr.yaml"),
            ("jobs/train_recommender.py", "conf/recommender_algr.yaml"),
            ("jobs/assign_sids.py", "conf/retokenize_nightly.yaml")} <= commands
    assert "jobs/assign_sids.py" in {job for job, config in commands if config != "conf/retokenize_nightly.yaml"}


def test_broken_manifests_are_rejected_with_clear_messages(schemas: dict) -> None:
    problems = validate.check_path(BROKEN, schemas)
    where = f"{BROKEN} (document"
    expected = [
        "1, RayJob broken-schema): spec: Additional properties are not allowed ('shutdownAfterJobFinish' was unexpected)",
        "1, RayJob broken-schema): spec.rayClusterSpec.headGroupSpec.rayStartParams.num-cpus: 0 is not of type 'string'",
        "2, RayJob broken-rules): spec.activeDeadlineSeconds: required",
        "2, RayJob broken-rules): spec.shutdownAfterJobFinishes: must be true",
        "2, RayJob broken-rules): spec.entrypoint: job file 'jobs/train_tokeniser.py' does not exist",
        '2, RayJob broken-rules): spec.rayClusterSpec.headGroupSpec.rayStartParams.num-cpus: the head must run no Ray work',
        "2, RayJob broken-rules): spec.rayClusterSpec.workerGroupSpecs[0]: need minReplicas <= replicas <= maxReplicas",
        "2, RayJob broken-rules): spec.rayClusterSpec.workerGroupSpecs[0]: object-store-memory (10737418240) exceeds "
        "the /dev/shm emptyDir sizeLimit",
        "2, RayJob broken-rules): spec.rayClusterSpec.workerGroupSpecs[0].template.spec.containers[0].resources: "
        "nvidia.com/gpu requests (1) must equal limits (2)",
        "3, RayCronJob broken-variable): spec.schedule: '30 2 * *' is not a 5-field cron expression",
        "3, RayCronJob broken-variable): spec.jobTemplate.entrypoint: $SIMCIT_BUCKET is not set in the submitter pod",
    ]
    for message in expected:
        assert any(p.startswith(f"{where} {message}") for p in problems), f"{message}\nnot in:\n" + "\n".join(problems)
    assert len(problems) == len(expected), "\n".join(problems)


def test_validator_cli_exits_1_and_prints_each_failure(schemas: dict, capsys: pytest.CaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "load_crd_schemas", lambda _: schemas)  # parsed once per session
    assert validate.main([str(BROKEN)]) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL ") == 11 and "1 manifest file(s)/overlay(s) checked, 11 problem(s)" in out


def test_unknown_config_override_is_rejected_by_the_jobs_config_loader() -> None:
    spec = dict(MANIFEST_JOBS[0][1])
    spec["entrypoint"] = "python jobs/train_tokenizer.py --config conf/tokenizer_algr.yaml train.batchsize=4096"
    with pytest.raises(ConfigError, match="unknown config key 'train.batchsize'"):
        load_entrypoint_config(spec, validate.configmaps_of([]))


@pytest.mark.parametrize("entrypoint,message", [
    ("python jobs/assign_sids.py --config conf/assign.yaml catalog=`date`", "unsupported shell expansion"),
    ("python jobs/assign_sids.py --config conf/assign.yaml && rm -rf runs", "one command per entrypoint"),
    ("bash -c 'python jobs/assign_sids.py'", "expected `python jobs/<job>.py --config"),
    ("python jobs/assign_sids.py --config conf/nope.yaml", "config file 'conf/nope.yaml' does not exist"),
    ("python jobs/assign_sids.py --config conf/assign.yaml --num-cpus 4", "dotted key=value overrides"),
])
def test_entrypoints_the_submitter_cannot_run_are_rejected(entrypoint: str, message: str) -> None:
    with pytest.raises(validate.EntrypointError, match=message.replace("(", r"\(").replace("`", ".")):
        validate.parse_job_command(validate.expand_entrypoint(entrypoint, {}))


def test_entrypoint_expansion_matches_the_submitter_shell() -> None:
    argv = validate.expand_entrypoint(
        "python jobs/assign_sids.py --config conf/retokenize_nightly.yaml "
        "catalog=${ROOT}/snapshots/$(date -u +%F)/catalog output=$ROOT/sids", {"ROOT": "s3://b/p"})
    assert argv[4:] == [f"catalog=s3://b/p/snapshots/{validate.CHECK_DATE}/catalog", "output=s3://b/p/sids"]


def test_upstream_kuberay_samples_pass_the_schema_check(schemas: dict) -> None:
    """The strict schemas accept KubeRay's own samples (so a rejection here is about our manifests)."""
    samples = sorted((validate.SCHEMA_DIR / "kuberay" / "samples").glob("*.yaml"))
    assert samples
    for path in samples:
        for doc in validate.load_documents(path):
            if doc.kind in validate.RAY_KINDS:
                assert validate.schema_problems(doc.body, schemas[("ray.io/v1", doc.kind)]) == [], doc.where


# ---------------------------------------------------------------- rendered overlays (kubectl kustomize)


def by_kind(docs: list, kind: str) -> list[dict]:
    return [d.body for d in docs if d.kind == kind]


def images(docs: list) -> set[str]:
    return {c["image"] for d in docs for _, pod in validate.pod_specs(d.body) for c in pod["containers"]}


def test_rendered_overlays_are_valid_and_self_contained(schemas: dict, rendered: dict) -> None:
    for name, docs in rendered.items():
        assert validate.check_documents(docs, schemas) == [], name
    for platform in ("overlays/dev", "overlays/prod", "overlays/prod-cronjob"):
        assert validate.reference_problems(rendered[platform]) == [], platform
    # the RayJobs use what the platform of the same environment creates
    assert validate.reference_problems(rendered["overlays/prod/jobs"], rendered["overlays/prod"]) == []


def test_rendered_overlays_set_namespace_and_real_images(rendered: dict) -> None:
    namespaces = {"overlays/dev": "simcit-dev", "overlays/prod": "simcit", "overlays/prod/jobs": "simcit",
                  "overlays/prod-cronjob": "simcit"}
    for name, namespace in namespaces.items():
        docs = rendered[name]
        assert {d.body["metadata"].get("namespace") for d in docs} == {namespace}, name
        assert all("/" in image and not image.startswith("simcit-dist-") for image in images(docs)), name


def test_prod_schedules_the_nightly_run_with_a_raycronjob(rendered: dict) -> None:
    docs = rendered["overlays/prod"]
    assert len(by_kind(docs, "RayCronJob")) == 1 and not by_kind(docs, "CronJob")
    (account,) = [a for a in by_kind(docs, "ServiceAccount") if a["metadata"]["name"] == "simcit-ray"]
    assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]
    (cluster,) = by_kind(docs, "RayCluster")
    gpu = [g for g in cluster["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu"]
    assert gpu and gpu[0]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"


def test_prod_cronjob_runs_the_same_nightly_rayjob_from_a_plain_cronjob(rendered: dict) -> None:
    (cron,) = by_kind(rendered["overlays/prod"], "RayCronJob")
    docs = rendered["overlays/prod-cronjob"]
    assert not by_kind(docs, "RayCronJob")
    (cronjob,) = by_kind(docs, "CronJob")
    assert (cronjob["spec"]["schedule"], cronjob["spec"]["timeZone"]) == (cron["spec"]["schedule"],
                                                                           cron["spec"]["timeZone"])
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    (template,) = by_kind(docs, "RayJob")
    assert template["metadata"]["name"] == "simcit-retokenize-nightly-template"
    assert template["spec"] == {**cron["spec"]["jobTemplate"], "suspend": True}
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["env"][0] == {"name": "TEMPLATE", "value": template["metadata"]["name"]}
    (script,) = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"] == pod["volumes"][0]["configMap"]["name"]]
    assert script["data"]["launch-nightly.sh"] == (validate.K8S / "nightly-cronjob" / "launch-nightly.sh").read_text()


def test_dev_is_a_small_cpu_cluster_on_minio(rendered: dict) -> None:
    docs = rendered["overlays/dev"]
    (cluster,) = by_kind(docs, "RayCluster")
    assert [g["groupName"] for g in cluster["spec"]["workerGroupSpecs"]] == ["cpu"]
    assert all(image.endswith("-cpu") for image in images(docs))
    assert "nvidia.com/gpu" not in yaml.safe_dump(cluster)
    (storage,) = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"] == "simcit-storage"]
    assert storage["data"]["AWS_ENDPOINT_URL_S3"].startswith("http://")


def test_interactive_raycluster_accepts_job_submission() -> None:
    (cluster,) = [d.body for d in validate.load_documents(validate.K8S / "base" / "raycluster.yaml")]
    spec, head = cluster["spec"], cluster["spec"]["headGroupSpec"]
    assert spec["enableInTreeAutoscaling"] and spec["autoscalerOptions"]["version"] == "v2"
    assert spec["authOptions"]["mode"] == "token"
    assert head["rayStartParams"]["num-cpus"] == "0" and head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert {"name": "dashboard", "containerPort": 8265} in head["template"]["spec"]["containers"][0]["ports"]
    assert all(g["minReplicas"] == 0 for g in spec["workerGroupSpecs"]), "an idle cluster is just the head"
