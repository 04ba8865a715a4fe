"""The CronJob fallback's launcher script, run by /bin/sh against a fake kubectl (no cluster)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cluster.conftest import validate

SCRIPT = validate.K8S / "nightly-cronjob" / "launch-nightly.sh"
TEMPLATE = "simcit-retokenize-nightly-template"


def template_rayjob() -> dict:
    """The template as the API server would return it: the RayCronJob's jobTemplate, suspended,
    with server-set metadata and status."""
    cron = yaml.safe_load((validate.K8S / "nightly" / "raycronjob-retokenize.yaml").read_text())
    return {
        "apiVersion": "ray.io/v1", "kind": "RayJob",
        "metadata": {"name": TEMPLATE, "namespace": "simcit", "uid": "1234", "resourceVersion": "42",
                     "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z",
                     "labels": {"app.kubernetes.io/component": "retokenize-nightly"},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                     "finalizers": ["ray.io/rayjob-finalizer"]},
        "spec": {**cron["spec"]["jobTemplate"], "suspend": True},
        "status": {"jobDeploymentStatus": "Suspended"},
    }


def old_run(day: int) -> dict:
    name = f"simcit-retokenize-nightly-{29000000 + day}"
    return {"apiVersion": "ray.io/v1", "kind": "RayJob",
            "metadata": {"name": name, "creationTimestamp": f"2026-01-{day:02d}T02:30:00Z",
                         "labels": {"simcit.io/launched-by": "simcit-retokenize-nightly"}},
            "spec": {}, "status": {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}}


def run_launcher(tmp_path: Path, final: dict) -> tuple[subprocess.CompletedProcess, dict]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = Path(__file__).with_name("fake_kubectl.py")
    (bin_dir / "kubectl").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake}" "$@"\n')
    (bin_dir / "kubectl").chmod(0o755)
    state_path = tmp_path / "state.json"
    jobs = {j["metadata"]["name"]: j for j in [template_rayjob(), *(old_run(d) for d in (3, 1, 2))]}
    state_path.write_text(json.dumps({"namespace": "simcit", "template": TEMPLATE, "rayjobs": jobs,
                                      "running_polls": 2, "final": final}))
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_KUBECTL_STATE": str(state_path),
           "TEMPLATE": TEMPLATE, "KEEP": "2", "POLL_SECONDS": "0", "NAMESPACE": "simcit"}
    result = subprocess.run(["/bin/sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    return result, json.loads(state_path.read_text())


def test_launcher_creates_the_nights_rayjob_from_the_template_and_prunes(tmp_path: Path) -> None:
    result, state = run_launcher(tmp_path, {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"})
    assert result.returncode == 0, result.stdout + result.stderr
    created = state["created"]
    name = created["metadata"]["name"]
    assert re.fullmatch(r"simcit-retokenize-nightly-\d{8}", name), name
    assert len(name) <= validate.MAX_NAME["RayJob"]
    # the template's spec, running; none of the server-set metadata or status is copied
    assert created["spec"] == {**template_rayjob()["spec"], "suspend": False}
    assert set(created["metadata"]) == {"name", "namespace", "labels"}
    assert created["metadata"]["labels"]["simcit.io/launched-by"] == "simcit-retokenize-nightly"
    assert "status" not in created
    # waited for the end (2 Running reads, then Complete), and kept the newest KEEP=2 nightly runs
    assert sum("jsonpath={.status.jobDeploymentStatus}" in c for c in state["calls"]) == 3
    assert sorted(state["rayjobs"]) == sorted([TEMPLATE, old_run(3)["metadata"]["name"], name])
    assert state["rayjobs"][TEMPLATE]["spec"]["suspend"] is True
    assert f"RayJob {name} finished: jobDeploymentStatus=Complete jobStatus=SUCCEEDED" in result.stdout


@pytest.mark.parametrize("final", [{"jobDeploymentStatus": "Failed", "jobStatus": "FAILED"},
                                   {"jobDeploymentStatus": "Complete", "jobStatus": "STOPPED"}])
def test_launcher_fails_the_kubernetes_job_when_the_night_fails(tmp_path: Path, final: dict) -> None:
    result, state = run_launcher(tmp_path, final)
    assert result.returncode == 1
    assert "nightly re-tokenization failed" in result.stderr
    assert f"describe rayjob {state['created']['metadata']['name']}" in result.stderr


def test_launcher_rbac_covers_exactly_the_calls_it_makes() -> None:
    rbac = validate.load_documents(validate.K8S / "nightly-cronjob" / "rbac.yaml")
    role = next(d.body for d in rbac if d.kind == "Role")
    assert role["rules"] == [{"apiGroups": ["ray.io"], "resources": ["rayjobs"],
                              "verbs": ["get", "list", "create", "delete"]}]
    # server-side verbs in the script (`patch --local` never reaches the API server)
    verbs = set(re.findall(r"kubectl -n \"\$ns\" (\w+)", SCRIPT.read_text()))
    assert verbs == {"get", "create", "delete"}
