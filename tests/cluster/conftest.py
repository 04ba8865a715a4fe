"""Fixtures of the cluster/ tests: the validator module, the KubeRay CRD schemas, rendered overlays."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_validator() -> ModuleType:
    """cluster/validate.py as a module (cluster/ is not a package)."""
    name = "simcit_cluster_validate"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "cluster" / "validate.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses resolve their module while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]


validate = load_validator()


@pytest.fixture(scope="session")
def schemas() -> dict:
    """Strict KubeRay CRD schemas from ../shared/k8s-schemas (skips when that checkout is absent)."""
    if not (validate.SCHEMA_DIR / "validate_crd.py").is_file():
        pytest.skip(f"KubeRay CRD schemas not found at {validate.SCHEMA_DIR} (expected ../shared/k8s-schemas)")
    return validate.load_crd_schemas()


@pytest.fixture(scope="session")
def rendered() -> dict[str, list]:
    """Every buildable kustomization under cluster/k8s, rendered once: {"overlays/prod": [Document]}."""
    try:
        validate.kustomize_command()
    except validate.KustomizeUnavailable as e:
        pytest.skip(f"cannot render the kustomize overlays offline: {e}")
    return {str(d.relative_to(validate.K8S)): validate.render(d) for d in validate.overlay_dirs()}
