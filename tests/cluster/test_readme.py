"""The READMEs stay true. cluster/README.md: its commands name real overlays, labels, objects and
files, its `ray job submit` commands are the slow test's command plus --address, with valid job
configs. README.md: it opens with its two commands, `make demo` and `make test`, which are Makefile
targets (the demo's job config loads); its relative links and those of docs/ resolve."""

from __future__ import annotations

import re
import shlex

from simcit_dist.config_loader import load_config
from tests.cluster.conftest import REPO, validate
from tests.cluster.test_ray_job_submit import SUBMIT
from tests.jobs_registry import config_class_of

README = (REPO / "cluster" / "README.md").read_text()
TOP_README = (REPO / "README.md").read_text()
MAKEFILE = (REPO / "Makefile").read_text()
ADDRESS = "http://localhost:8265"


def commands(prefix: str) -> list[str]:
    """Every command of the README's code blocks that starts with ``prefix`` (comments dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    lines = [line.split("  #", 1)[0].strip() for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line.startswith(prefix)]


def test_ray_job_submit_commands_are_the_tested_command_with_an_address() -> None:
    submits = commands("ray job submit")
    assert len(submits) >= 2
    for command in submits:
        argv = shlex.split(command)
        assert argv[:5] == ["ray", "job", "submit", "--address", ADDRESS], command
        assert argv[:3] + argv[5:argv.index("--")] == ["ray", *SUBMIT[1:]], command
        job = validate.parse_job_command(argv[argv.index("--") + 1:])
        load_config(config_class_of(job.job), REPO / job.config, job.overrides)
    assert any("jobs/train_tokenizer.py --config conf/tokenizer_algr.yaml" in c for c in submits)
    for command in commands("ray job "):
        assert f"--address {ADDRESS}" in command, command


def test_kubectl_commands_name_real_overlays_labels_and_objects() -> None:
    buildable = {str(d.relative_to(REPO)) for d in validate.overlay_dirs()}
    kubectl = commands("kubectl ")
    dirs = [m for c in kubectl for m in re.findall(r"(?:-k|kustomize) ([\w/.-]+)", c)]
    assert dirs and set(dirs) <= buildable, set(dirs) - buildable
    jobs = {d.body["metadata"]["labels"]["simcit.io/job"]: d.name
            for p in validate.manifest_files() for d in validate.load_documents(p) if d.kind == "RayJob"}
    assert set(re.findall(r"-l simcit\.io/job=([\w-]+)", README)) <= set(jobs)
    assert all(label in README for label in jobs), "the README names every RayJob's label"
    names = {d.name for p in validate.manifest_files() for d in validate.load_documents(p)}
    names |= {f"{n}-head-svc" for n in names}  # KubeRay's head Service of RayCluster <n>
    names |= {"simcit-s3-credentials", "simcit"}  # created by the user / by KubeRay (token Secret of RayCluster simcit)
    for command in kubectl:
        for kind, name in re.findall(r"\b(rayjob|raycronjob|raycluster|cronjob|secret|svc|job)[ /]"
                                     r"(simcit[\w-]*)", command):
            assert name in names, f"{command}: no {kind} {name}"


def test_paths_in_the_readme_exist() -> None:
    paths = set(re.findall(r"`((?:cluster/|k8s/|conf/|jobs/|tests/)[\w./-]+)`", README))
    paths |= set(re.findall(r"\b((?:cluster|tests)/[\w./-]+\.(?:py|yaml|sh|txt))\b", README))
    assert paths
    for path in paths:
        path = path.rstrip(".")
        full = REPO / path if (REPO / path).exists() else REPO / "cluster" / path
        assert full.exists(), path


def test_the_readme_opens_with_make_demo_and_make_test() -> None:
    first_block = re.search(r"```bash\n(.*?)```", TOP_README, flags=re.S)
    assert first_block and TOP_README.index(first_block.group(0)) < TOP_README.index("\n## ")
    assert [line.split("#", 1)[0].strip() for line in first_block.group(1).splitlines()] == ["make demo", "make test"]
    for target in ("demo", "test"):
        assert re.search(rf"^{target}:", MAKEFILE, flags=re.M), f"Makefile has no target {target}"
    recipe = re.search(r"^demo:.*\n\t(.+)$", MAKEFILE, flags=re.M)
    assert recipe, "Makefile: the demo target has no recipe"
    argv = shlex.split(recipe.group(1))  # $(PY) jobs/pipeline.py --config conf/demo.yaml
    job, config = argv[1], argv[argv.index("--config") + 1]
    load_config(config_class_of(job), REPO / config)


def test_relative_links_in_the_readme_and_docs_resolve() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#", 1)[0]
            if not path or "://" in path or path.startswith("mailto:"):
                continue
            assert (page.parent / path).exists(), f"{page.relative_to(REPO)}: link to {target} does not resolve"
