"""A stand-in for `kubectl`, for testing cluster/k8s/nightly-cronjob/launch-nightly.sh offline.

It understands exactly the calls the launcher makes, keeps its RayJobs in a JSON state file
($FAKE_KUBECTL_STATE), logs every call there, and fails loudly on anything else. A created RayJob
reports `Running` for `running_polls` status reads, then the state file's `final` status.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what `kubectl patch --type merge` applies)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def option(args: list[str], name: str, default: str | None = None) -> str:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    if default is None:
        sys.exit(f"fake kubectl: {name} missing in {args}")
    return default


def jsonpath(obj: dict, expr: str) -> str:
    node: Any = obj
    for part in expr.strip("{}").strip(".").split("."):
        node = node.get(part, "") if isinstance(node, dict) else ""
    return str(node)


def get(state: dict, args: list[str]) -> str:
    jobs = state["rayjobs"]
    selector = option(args, "-l", "")
    if selector:
        key, value = selector.split("=", 1)
        found = [j for j in jobs.values() if j["metadata"].get("labels", {}).get(key) == value]
        found.sort(key=lambda j: j["metadata"]["creationTimestamp"])
        return "".join(f"rayjob.ray.io/{j['metadata']['name']}\n" for j in found)
    name = args[args.index("rayjob") + 1]
    if name not in jobs:
        sys.exit(f'Error from server (NotFound): rayjobs.ray.io "{name}" not found')
    job = jobs[name]
    output = option(args, "-o", "")
    if output == "json":
        return json.dumps(job)
    if output.startswith("jsonpath="):
        if name != state["template"] and "jobDeploymentStatus" in output:
            state["reads"] = state.get("reads", 0) + 1
            done = state["reads"] > state.get("running_polls", 0)
            job["status"] = dict(state["final"]) if done else {"jobDeploymentStatus": "Running"}
        return jsonpath(job, output.split("=", 1)[1])
    sys.exit(f"fake kubectl: unsupported get output {output!r}")


def main(args: list[str]) -> str:
    path = os.environ["FAKE_KUBECTL_STATE"]
    with open(path) as f:
        state = json.load(f)
    state.setdefault("calls", []).append(args)
    if "-n" in args:
        i = args.index("-n")
        assert args[i + 1] == state["namespace"], f"wrong namespace {args[i + 1]}"
        args = args[:i] + args[i + 2:]
    verb = args[0]
    if verb == "get":
        out = get(state, args)
    elif verb == "patch" and "--local" in args and option(args, "--type", "") == "merge":
        with open(option(args, "-f")) as f, open(option(args, "--patch-file")) as p:
            out = json.dumps(merge_patch(json.load(f), json.load(p)))
    elif verb == "create":
        with open(option(args, "-f")) as f:
            job = json.load(f)
        name = job["metadata"]["name"]
        state["created"] = job
        job = json.loads(json.dumps(job))
        job["metadata"]["creationTimestamp"] = "2099-01-01T00:00:00Z"
        state["rayjobs"][name] = job
        out = f"rayjob.ray.io/{name} created\n"
    elif verb == "delete":
        name = args[1].split("/", 1)[1]
        del state["rayjobs"][name]
        out = f'rayjob.ray.io "{name}" deleted\n'
    else:
        sys.exit(f"fake kubectl: unsupported call {args}")
    with open(path, "w") as f:
        json.dump(state, f)
    return out


if __name__ == "__main__":
    sys.stdout.write(main(sys.argv[1:]))
