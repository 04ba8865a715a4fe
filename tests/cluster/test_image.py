"""cluster/Dockerfile (parsed, not built: no Docker engine here) agrees with pyproject.toml and the
manifests: same pins, what it copies exists and is in the build context, the project lands where the
RayJobs' working_dir says, the image tags in the manifests are the project's version."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.cluster.conftest import REPO, validate

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

DOCKERFILE = REPO / "cluster" / "Dockerfile"
REQUIREMENTS = REPO / "cluster" / "requirements.txt"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in DOCKERFILE.read_text().splitlines()
                                       if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def build_args() -> dict[str, str]:
    return dict(arg.split("=", 1) for op, arg in instructions() if op == "ARG" and "=" in arg)


def pins(lines: list[str]) -> dict[str, str]:
    """{"ray[train,data,default]": "2.60.0"} from requirement strings with an exact `==` pin."""
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[name.strip()] = version.strip()
    return out


def test_image_pins_exactly_what_pyproject_pins() -> None:
    project = pins(PYPROJECT["project"]["dependencies"])
    assert len(project) == len(PYPROJECT["project"]["dependencies"]), "every runtime dependency is pinned with =="
    image = pins(REQUIREMENTS.read_text().splitlines())
    # torch: same version, the wheel comes from the variant's index (+cu130 / +cpu local tag)
    assert build_args()["TORCH_VERSION"] == project.pop("torch")
    assert image == project
    runs = " ".join(arg for op, arg in instructions() if op == "RUN")
    assert '"torch==${TORCH_VERSION}" --index-url' in runs and "pip install -r /tmp/requirements.txt" in runs
    assert "pip install --no-deps ." in runs, "the project itself adds no unpinned dependency"


def test_image_python_satisfies_requires_python() -> None:
    python = tuple(int(x) for x in build_args()["PYTHON_VERSION"].split("."))
    minimum = tuple(int(x) for x in re.findall(r"\d+", PYPROJECT["project"]["requires-python"]))
    assert python >= minimum


def test_copied_files_exist_and_are_in_the_build_context() -> None:
    allowed = [line[1:].rstrip("/") for line in (REPO / "cluster" / "Dockerfile.dockerignore").read_text().splitlines()
               if line.startswith("!")]
    for op, arg in instructions():
        if op != "COPY":
            continue
        *sources, _ = [a for a in arg.split() if not a.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            assert source.rstrip("/") in allowed, f"COPY {source}: excluded by cluster/Dockerfile.dockerignore"


def test_rayjobs_upload_the_directory_where_the_image_puts_the_project() -> None:
    workdirs = [arg for op, arg in instructions() if op == "WORKDIR"]
    assert workdirs == ["/home/ray/simcit"]
    copied = {a.split()[-1].rstrip("/").removeprefix("./") for op, a in instructions() if op == "COPY"}
    assert {"jobs", "conf", "simcit_dist"} <= copied
    for path in validate.manifest_files():
        for doc in validate.load_documents(path):
            spec = {"RayJob": doc.body.get("spec"), "RayCronJob": (doc.body.get("spec") or {}).get("jobTemplate")}.get(doc.kind)
            if spec is not None:
                assert yaml.safe_load(spec["runtimeEnvYAML"])["working_dir"] == workdirs[0], doc.where


def test_manifest_images_are_the_projects_two_variants_at_its_version() -> None:
    version = PYPROJECT["project"]["version"]
    seen = set()
    for path in validate.manifest_files():
        for doc in validate.load_documents(path):
            for _, pod in validate.pod_specs(doc.body):
                seen |= {c["image"] for c in pod["containers"]}
    assert seen == {f"simcit-dist-cpu:{version}", f"simcit-dist-gpu:{version}"}
    assert f"simcit-dist:{version}-gpu ." in DOCKERFILE.read_text()
    assert f"--build-arg TORCH_VARIANT=cpu -t $REGISTRY/simcit-dist:{version}-cpu ." in DOCKERFILE.read_text()
