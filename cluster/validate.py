"""Offline validation of the Kubernetes manifests under cluster/k8s, before anything reaches a cluster.

    .venv/bin/python cluster/validate.py                       # every standalone manifest and overlay
    .venv/bin/python cluster/validate.py cluster/k8s/overlays/prod my-rayjob.yaml

A path is a manifest file or a kustomization directory (rendered with ``kubectl kustomize`` or
``kustomize build``). Every document is checked for:

* KubeRay kinds (RayCluster, RayJob, RayCronJob): the CRD's ``openAPIV3Schema`` made strict (unknown
  fields are errors, as a typo would otherwise be pruned silently), from ``../shared/k8s-schemas``
  (its ``validate_crd.load_schemas``); then what the operator rejects although the schema allows it
  (name lengths, replica bounds, suspend without shutdown, ...) and this project's rules for Ray pods:
  the head runs no work (``num-cpus: "0"``), every Ray container has CPU/memory requests and limits,
  GPU requests equal limits, object-store memory is set and fits in ``/dev/shm`` and the memory limit,
  the storage settings reach every Ray container, ``rayVersion`` is the pinned Ray;
* RayJobs: the fields every job here sets (entrypoint, runtimeEnvYAML with a working_dir,
  shutdownAfterJobFinishes, ttlSecondsAfterFinished, activeDeadlineSeconds, backoffLimit,
  rayClusterSpec) and the entrypoint: ``python jobs/<job>.py --config conf/<file>.yaml key=value ...``
  naming files that exist, after the submitter shell's expansion (``$(date ...)`` and variables that
  the submitter pod gets from a ConfigMap; anything else is refused);
* core kinds used here (ServiceAccount, ConfigMap, Secret, Role, RoleBinding, CronJob): required fields;
* references between documents: service accounts, ConfigMaps and Roles that are used exist.

Whether an entrypoint's overrides are valid keys of the job's config is checked by tests/cluster,
which imports the project. Exit status 0 when everything passes; otherwise one
``FAIL <file> (document n, Kind name): <field>: <message>`` line per problem and status 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
import zoneinfo
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "cluster" / "k8s"
SCHEMA_DIR = REPO.parent / "shared" / "k8s-schemas"
# Files that kustomize completes (their spec is copied in at build time): checked only when rendered.
FRAGMENTS = {K8S / "nightly-cronjob" / "template" / "rayjob-template.yaml"}
# The date `$(date ...)` in an entrypoint expands to when it is checked.
CHECK_DATE = "2026-01-01"

RAY_KINDS = {"RayCluster", "RayJob", "RayCronJob"}
# KubeRay: RayCluster names <= 53, RayJob names <= 47 (the cluster name adds a suffix), and a
# RayCronJob's RayJobs are named <cronjob>-<8-digit minutes>.
MAX_NAME = {"RayCluster": 53, "RayJob": 47, "RayCronJob": 47 - 9}
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUANTITY = re.compile(r"^(\d+(\.\d+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
UNIT = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
GPU = "nvidia.com/gpu"
STORAGE_CONFIGMAP = "simcit-storage"
ENTRY_JOB = re.compile(r"^jobs/[A-Za-z0-9_]+\.py$")
OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*=")


class ManifestError(Exception):
    """A manifest cannot be read or rendered at all."""


class KustomizeUnavailable(ManifestError):
    """Neither `kubectl kustomize` nor `kustomize build` is installed."""


@dataclass
class Document:
    source: str
    index: int
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", "?"))

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", "?"))

    @property
    def where(self) -> str:
        return f"{self.source} (document {self.index}, {self.kind} {self.name})"


@dataclass
class JobCommand:
    """A parsed entrypoint: ``python <job> --config <config> <overrides...>``."""

    job: str
    config: str
    overrides: list[str] = field(default_factory=list)


class EntrypointError(ValueError):
    """An entrypoint is not a job command this project can run."""


# ---------------------------------------------------------------- loading and rendering


def load_documents(path: Path) -> list[Document]:
    """The YAML mappings of one manifest file (empty documents skipped)."""
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as e:
        raise ManifestError(f"{path}: not valid YAML: {e}") from e
    return [Document(str(path), i + 1, d) for i, d in enumerate(docs) if d is not None]


def kustomize_command() -> list[str]:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    raise KustomizeUnavailable("neither `kubectl` (kubectl kustomize) nor `kustomize` is on PATH")


def render(directory: Path) -> list[Document]:
    """``kubectl kustomize <directory>`` (offline: only local bases are used) as documents."""
    result = subprocess.run([*kustomize_command(), str(directory)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise ManifestError(f"{directory}: kustomize failed: {result.stderr.strip()}")
    docs = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    return [Document(f"{directory} (rendered)", i + 1, d) for i, d in enumerate(docs)]


def kustomization_kind(directory: Path) -> str | None:
    path = directory / "kustomization.yaml"
    return (yaml.safe_load(path.read_text()) or {}).get("kind", "Kustomization") if path.is_file() else None


def overlay_dirs() -> list[Path]:
    """Every buildable kustomization (kind Kustomization, not Component) under cluster/k8s."""
    dirs = (p.parent for p in sorted(K8S.rglob("kustomization.yaml")))
    return [d for d in dirs if kustomization_kind(d) == "Kustomization"]


def manifest_files() -> list[Path]:
    """Standalone manifest files: resources of a kustomization, not patches or kustomize-filled fragments."""
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or path in FRAGMENTS:
            continue
        docs = list(yaml.safe_load_all(path.read_text()))
        if docs and all(isinstance(d, dict) and "kind" in d for d in docs if d is not None):
            out.append(path)
    return out


def load_crd_schemas(schema_dir: Path = SCHEMA_DIR) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> strict JSON schema, via the shared ``validate_crd.py``."""
    script = schema_dir / "validate_crd.py"
    if not script.is_file():
        raise FileNotFoundError(f"KubeRay CRD schemas not found: {script} (expected ../shared/k8s-schemas)")
    spec = importlib.util.spec_from_file_location("validate_crd", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_schemas()


def pinned_ray_version() -> str:
    match = re.search(r'"ray\[[^\]]*\]==([^"]+)"', (REPO / "pyproject.toml").read_text())
    if not match:
        raise ValueError("pyproject.toml: no exact pin of ray[...]")
    return match.group(1)


# ---------------------------------------------------------------- small helpers


def get(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def quantity(value: Any) -> float | None:
    """A Kubernetes quantity ("8Gi", "500m", 4) as a number, or None when it is not one."""
    match = QUANTITY.match(str(value))
    return float(match.group(1)) * UNIT[match.group(3) or ""] if match else None


def pod_specs(node: Any, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every pod spec (a mapping with a `containers` list) inside a document, with its path."""
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield path, node
        for key, value in node.items():
            yield from pod_specs(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from pod_specs(value, f"{path}[{i}]")


# ---------------------------------------------------------------- entrypoints


def expand_entrypoint(entrypoint: str, env: dict[str, str]) -> list[str]:
    """The argv the submitter's ``bash -c`` makes of an entrypoint: ``$(date ...)`` becomes a date,
    ``$VAR``/``${VAR}`` a value from ``env``; any other expansion or shell syntax is refused."""

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in env:
            raise EntrypointError(f"${name} is not set in the submitter pod (add it to ConfigMap "
                                  f"{STORAGE_CONFIGMAP} or the submitter's env); set: {sorted(env)}")
        return env[name]

    text = re.sub(r"\$\(date(\s+-u)?(\s+\+%F)?\)", CHECK_DATE, entrypoint)
    text = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", variable, text)
    if "$" in text or "`" in text:
        raise EntrypointError(f"unsupported shell expansion in {entrypoint!r}: only $(date -u +%F) and "
                              "$VAR / ${VAR} from the submitter's environment")
    argv = shlex.split(text, comments=False)
    operators = [a for a in argv if a in {";", "&&", "||", "|", "&", ">", "<"}]
    if operators:
        raise EntrypointError(f"one command per entrypoint; found shell operators {operators}")
    return argv


def parse_job_command(argv: list[str], repo: Path = REPO) -> JobCommand:
    """``python jobs/<job>.py --config conf/<file>.yaml key=value ...`` with both files present."""
    if len(argv) < 4 or argv[0] != "python" or argv[2] != "--config":
        raise EntrypointError(f"expected `python jobs/<job>.py --config conf/<file>.yaml key=value ...`, "
                              f"got {shlex.join(argv)!r}")
    job, config, overrides = argv[1], argv[3], argv[4:]
    if not ENTRY_JOB.match(job) or not (repo / job).is_file():
        raise EntrypointError(f"job file {job!r} does not exist (jobs: "
                              f"{sorted(p.name for p in (repo / 'jobs').glob('[!_]*.py'))})")
    if not config.startswith("conf/") or not (repo / config).is_file():
        raise EntrypointError(f"config file {config!r} does not exist in conf/")
    bad = [o for o in overrides if not OVERRIDE.match(o)]
    if bad:
        raise EntrypointError(f"arguments after the config must be dotted key=value overrides, got {bad}")
    return JobCommand(job, config, overrides)


def submitter_env(job_spec: dict, configmaps: dict[str, dict[str, str]]) -> dict[str, str]:
    """Environment of the submitter container: its `env` values and its ConfigMap `envFrom`."""
    containers = get(job_spec, "submitterPodTemplate.spec.containers") or [{}]
    env: dict[str, str] = {}
    for source in containers[0].get("envFrom") or []:
        name = get(source, "configMapRef.name")
        if name is not None:
            env.update(configmaps.get(name, {}))
    env.update({e["name"]: str(e.get("value", "")) for e in containers[0].get("env") or [] if "name" in e})
    return env


def job_command(job_spec: dict, configmaps: dict[str, dict[str, str]]) -> JobCommand:
    return parse_job_command(expand_entrypoint(str(job_spec.get("entrypoint", "")),
                                               submitter_env(job_spec, configmaps)))


# ---------------------------------------------------------------- KubeRay rules


def container_problems(c: dict, path: str, ray_container: bool) -> list[str]:
    out = [f"{path}: container needs `{k}`" for k in ("name", "image") if not c.get(k)]
    res = c.get("resources") or {}
    for side in ("requests", "limits"):
        for key in ("cpu", "memory"):
            if quantity(get(res, f"{side}.{key}")) is None:
                out.append(f"{path}.resources.{side}.{key}: missing or not a quantity")
    gpus = [(res.get(side) or {}).get(GPU) for side in ("requests", "limits")]
    if gpus != [None, None] and str(gpus[0]) != str(gpus[1]):
        out.append(f"{path}.resources: {GPU} requests ({gpus[0]}) must equal limits ({gpus[1]}): an extended resource")
    if ray_container:
        refs = [get(e, "configMapRef.name") for e in c.get("envFrom") or []]
        if STORAGE_CONFIGMAP not in refs:
            out.append(f"{path}.envFrom: Ray containers read the object-store settings from ConfigMap "
                       f"{STORAGE_CONFIGMAP} (envFrom configMapRef)")
    return out


def group_problems(group: dict, path: str, head: bool) -> list[str]:
    """One head or worker group: its Ray container, object-store memory and /dev/shm."""
    params = group.get("rayStartParams") or {}
    pod = get(group, "template.spec") or {}
    containers = pod.get("containers") or []
    if not containers:
        return [f"{path}.template.spec.containers: a Ray group needs its Ray container first"]
    ray = containers[0]
    cpath = f"{path}.template.spec.containers[0]"
    out = container_problems(ray, cpath, ray_container=True)
    if head and params.get("num-cpus") != "0":
        out.append(f'{path}.rayStartParams.num-cpus: the head must run no Ray work: set "0"')
    store = params.get("object-store-memory")
    if store is None or not str(store).isdigit():
        return out + [f"{path}.rayStartParams.object-store-memory: set it (bytes, as a string)"]
    limit = quantity(get(ray, "resources.limits.memory"))
    if limit is not None and int(store) >= limit:
        out.append(f"{path}.rayStartParams.object-store-memory ({store}) must be below the memory limit")
    shm = shm_size(pod, ray)
    if shm is not None and int(store) > shm:
        out.append(f"{path}: object-store-memory ({store}) exceeds the /dev/shm emptyDir sizeLimit ({shm:.0f})")
    return out


def shm_size(pod: dict, container: dict) -> float | None:
    """sizeLimit of the memory emptyDir mounted at /dev/shm, if there is one."""
    mounts = {m.get("name"): m.get("mountPath") for m in container.get("volumeMounts") or []}
    for volume in pod.get("volumes") or []:
        if mounts.get(volume.get("name")) == "/dev/shm" and get(volume, "emptyDir.medium") == "Memory":
            return quantity(get(volume, "emptyDir.sizeLimit"))
    return None


def cluster_spec_problems(spec: dict, path: str) -> list[str]:
    out = []
    if spec.get("rayVersion") != pinned_ray_version():
        out.append(f"{path}.rayVersion: {spec.get('rayVersion')!r} is not the pinned ray "
                   f"{pinned_ray_version()!r} (pyproject.toml)")
    out += group_problems(spec.get("headGroupSpec") or {}, f"{path}.headGroupSpec", head=True)
    names = [g.get("groupName") for g in spec.get("workerGroupSpecs") or []]
    if len(names) != len(set(names)):
        out.append(f"{path}.workerGroupSpecs: group names must be unique, got {names}")
    for i, group in enumerate(spec.get("workerGroupSpecs") or []):
        gpath = f"{path}.workerGroupSpecs[{i}]"
        lo, n, hi = group.get("minReplicas"), group.get("replicas", group.get("minReplicas")), group.get("maxReplicas")
        if lo is None or hi is None or not lo <= (n if n is not None else lo) <= hi:
            out.append(f"{gpath}: need minReplicas <= replicas <= maxReplicas, got {lo}, {n}, {hi}")
        out += group_problems(group, gpath, head=False)
    return out


def job_spec_problems(spec: dict, path: str, configmaps: dict[str, dict[str, str]]) -> list[str]:
    out = [f"{path}.{k}: required for the RayJobs of this project" for k in
           ("entrypoint", "runtimeEnvYAML", "ttlSecondsAfterFinished", "activeDeadlineSeconds",
            "backoffLimit", "rayClusterSpec") if k not in spec]
    if spec.get("shutdownAfterJobFinishes") is not True:
        out.append(f"{path}.shutdownAfterJobFinishes: must be true (the job's cluster is deleted after it)")
    if spec.get("suspend") and not spec.get("shutdownAfterJobFinishes"):
        out.append(f"{path}.suspend: KubeRay allows suspend only with shutdownAfterJobFinishes: true")
    if (spec.get("activeDeadlineSeconds") or 1) <= 0:
        out.append(f"{path}.activeDeadlineSeconds: must be a positive number of seconds")
    try:
        env = yaml.safe_load(spec.get("runtimeEnvYAML") or "")
    except yaml.YAMLError as e:
        env = None
        out.append(f"{path}.runtimeEnvYAML: not valid YAML: {e}")
    if "runtimeEnvYAML" in spec and not (isinstance(env, dict) and env.get("working_dir")):
        out.append(f"{path}.runtimeEnvYAML: must be a mapping with working_dir (where jobs/ and conf/ are)")
    if spec.get("submissionMode", "K8sJobMode") != "K8sJobMode":
        out.append(f"{path}.submissionMode: K8sJobMode: its submitter uploads the image's working_dir")
    if "entrypoint" in spec:
        try:
            job_command(spec, configmaps)
        except EntrypointError as e:
            out.append(f"{path}.entrypoint: {e}")
    if "rayClusterSpec" in spec:
        out += cluster_spec_problems(spec["rayClusterSpec"], f"{path}.rayClusterSpec")
    return out


def ray_problems(doc: Document, configmaps: dict[str, dict[str, str]]) -> list[str]:
    """What KubeRay or this project rejects beyond the CRD schema."""
    body, kind, name = doc.body, doc.kind, doc.name
    out = []
    if len(name) > MAX_NAME[kind] or not DNS1035.match(name):
        out.append(f"metadata.name: {name!r} must be a DNS-1035 label of at most {MAX_NAME[kind]} characters")
    spec = body.get("spec") or {}
    if kind == "RayCluster":
        out += cluster_spec_problems(spec, "spec")
    elif kind == "RayJob":
        out += job_spec_problems(spec, "spec", configmaps)
    else:
        out += cron_problems(spec)
        out += job_spec_problems(spec.get("jobTemplate") or {}, "spec.jobTemplate", configmaps)
    return out


def cron_problems(spec: dict) -> list[str]:
    out = []
    schedule = str(spec.get("schedule", ""))
    if not (schedule.startswith("@") or len(schedule.split()) == 5):
        out.append(f"spec.schedule: {schedule!r} is not a 5-field cron expression")
    if "timeZone" in spec:
        try:
            zoneinfo.ZoneInfo(spec["timeZone"])
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            out.append(f"spec.timeZone: {spec['timeZone']!r} is not an IANA time zone")
    return out


# ---------------------------------------------------------------- core kinds

CORE_REQUIRED: dict[tuple[str, str], list[str]] = {
    ("v1", "ServiceAccount"): [],
    ("v1", "ConfigMap"): [],
    ("v1", "Secret"): [],
    ("rbac.authorization.k8s.io/v1", "Role"): ["rules"],
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ["roleRef.apiGroup", "roleRef.kind", "roleRef.name", "subjects"],
    ("batch/v1", "CronJob"): ["spec.schedule", "spec.jobTemplate.spec.template.spec.containers"],
}


def core_problems(doc: Document) -> list[str]:
    body = doc.body
    out = [f"{f}: required" for f in CORE_REQUIRED[(body["apiVersion"], doc.kind)] if get(body, f) in (None, [], "")]
    if doc.kind == "ConfigMap":
        out += [f"data.{k}: ConfigMap values must be strings" for k, v in (body.get("data") or {}).items()
                if not isinstance(v, str)]
    for i, rule in enumerate(body.get("rules") or []):
        out += [f"rules[{i}].{k}: required" for k in ("apiGroups", "resources", "verbs") if not rule.get(k)]
    for i, subject in enumerate(body.get("subjects") or []):
        out += [f"subjects[{i}].{k}: required" for k in ("kind", "name") if not subject.get(k)]
    if doc.kind == "CronJob":
        pod = get(body, "spec.jobTemplate.spec.template.spec") or {}
        if pod.get("restartPolicy") not in ("Never", "OnFailure"):
            out.append("spec.jobTemplate.spec.template.spec.restartPolicy: must be Never or OnFailure")
        out += cron_problems(body.get("spec") or {})
        for i, c in enumerate(pod.get("containers") or []):
            out += container_problems(c, f"spec.jobTemplate.spec.template.spec.containers[{i}]", ray_container=False)
    return out


# ---------------------------------------------------------------- documents and sets of documents


def check_document(doc: Document, schemas: dict[tuple[str, str], dict],
                   configmaps: dict[str, dict[str, str]]) -> list[str]:
    """Problems of one document, each as ``<where>: <field>: <message>``."""
    body = doc.body
    if not isinstance(body, dict) or not body.get("apiVersion") or not body.get("kind"):
        return [f"{doc.where}: <root>: a manifest needs apiVersion and kind"]
    name = get(body, "metadata.name")
    if not isinstance(name, str) or len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        return [f"{doc.where}: metadata.name: {name!r} is not a valid object name"]
    key = (body["apiVersion"], doc.kind)
    if doc.kind in RAY_KINDS:
        if key not in schemas:
            return [f"{doc.where}: apiVersion: {key[0]!r} is not served for {doc.kind}; use ray.io/v1"]
        problems = schema_problems(body, schemas[key]) or ray_problems(doc, configmaps)
    elif key in CORE_REQUIRED:
        problems = core_problems(doc)
    else:
        problems = [f"<root>: no rules for {key[0]} {doc.kind} (add them to cluster/validate.py)"]
    return [f"{doc.where}: {p}" for p in problems]


def schema_problems(body: dict, schema: dict) -> list[str]:
    import jsonschema

    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(body), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors]


def configmaps_of(docs: list[Document]) -> dict[str, dict[str, str]]:
    """ConfigMaps by name: the platform's (base/storage.yaml) overlaid with those among ``docs``."""
    base = [d for d in load_documents(K8S / "base" / "storage.yaml") if d.kind == "ConfigMap"]
    return {d.name: dict(d.body.get("data") or {}) for d in [*base, *docs] if d.kind == "ConfigMap"}


def reference_problems(docs: list[Document], provided: Sequence[Document] = ()) -> list[str]:
    """Used ServiceAccounts, ConfigMaps and Roles exist among ``docs`` (or ``provided``: what another
    build, e.g. the platform of the same environment, creates)."""
    have = {(d.kind, d.name) for d in [*docs, *provided]}
    out = []
    for doc in docs:
        for path, pod in pod_specs(doc.body):
            account = pod.get("serviceAccountName")
            if account and ("ServiceAccount", account) not in have:
                out.append(f"{doc.where}: {path}.serviceAccountName: no ServiceAccount {account!r}")
            out += [f"{doc.where}: {path}: {p}" for p in pod_reference_problems(pod, have)]
        ref = doc.body.get("roleRef") or {}
        if doc.kind == "RoleBinding" and (ref.get("kind"), ref.get("name")) not in have:
            out.append(f"{doc.where}: roleRef: no {ref.get('kind')} {ref.get('name')!r}")
        for subject in doc.body.get("subjects") or [] if doc.kind == "RoleBinding" else []:
            if subject.get("kind") == "ServiceAccount" and ("ServiceAccount", subject.get("name")) not in have:
                out.append(f"{doc.where}: subjects: no ServiceAccount {subject.get('name')!r}")
    return out


def pod_reference_problems(pod: dict, have: set[tuple[str, str]]) -> list[str]:
    out = []
    for volume in pod.get("volumes") or []:
        name = get(volume, "configMap.name")
        if name and ("ConfigMap", name) not in have:
            out.append(f"volumes: no ConfigMap {name!r}")
    for c in pod.get("containers") or []:
        for source in c.get("envFrom") or []:
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                ref = source.get(key) or {}
                if ref and not ref.get("optional") and (kind, ref.get("name")) not in have:
                    out.append(f"containers[{c.get('name')}].envFrom: no {kind} {ref.get('name')!r}")
    return out


def check_documents(docs: list[Document], schemas: dict[tuple[str, str], dict]) -> list[str]:
    configmaps = configmaps_of(docs)
    return [p for doc in docs for p in check_document(doc, schemas, configmaps)]


def check_path(path: Path, schemas: dict[tuple[str, str], dict]) -> list[str]:
    """A manifest file, or a kustomization directory rendered first (plus its references)."""
    try:
        docs = render(path) if path.is_dir() else load_documents(path)
    except ManifestError as e:
        return [str(e)]
    problems = check_documents(docs, schemas)
    if path.is_dir() and any(d.kind in {"RayCluster", "CronJob", "RoleBinding"} for d in docs):
        problems += reference_problems(docs)  # a platform build is self-contained
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="manifest files or kustomization dirs "
                        "(default: every standalone manifest and overlay under cluster/k8s)")
    parser.add_argument("--schemas", type=Path, default=SCHEMA_DIR, help="dir with validate_crd.py and kuberay/")
    args = parser.parse_args(argv)
    schemas = load_crd_schemas(args.schemas)
    paths = args.paths or [*manifest_files(), *overlay_dirs()]
    problems = [p for path in paths for p in check_path(path, schemas)]
    for problem in problems:
        print(f"FAIL {problem}")
    print(f"{len(paths)} manifest file(s)/overlay(s) checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
