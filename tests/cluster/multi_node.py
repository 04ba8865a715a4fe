"""A local multi-node Ray cluster for tests: one head and labelled worker nodes, each its own
`ray start --block` process group, sharing nothing but a moto S3 server.

Every node is started in a new session (``start_new_session=True``), so the `ray start --block`
process leads a process group holding that node's raylet, agents and workers (Ray starts its
services without ``setsid``). A node is killed by signalling that group and every descendant found
by pid (``psutil``) -- never ``ray stop``, which kills every Ray process of the user, other runs on
the machine included.

Temp dirs: Ray >= 2.x accepts ``--temp-dir`` per node (``ray start --help``: "Can be specified per
node"), so each node gets its own short directory (unix socket paths must stay <= 107 chars) and
its logs stay apart. Ports: several nodes on one host must not share the fixed default ports
(dashboard agent 52365, client server 10001, ...), and other Ray instances run on the machine,
so every port is a free one picked here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).with_name("ray"))
NODE_IP = "127.0.0.1"

# GCS notices a dead raylet after period x threshold (defaults: 3 s x 5 after a 5 s delay); the
# fault tests kill nodes and wait for that, so the head is told to be quicker.
FAST_HEALTH_CHECKS = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "2000",
                      "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "1000"}


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind((NODE_IP, 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def kill_tree(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the process group led by ``proc`` and every descendant of it (by pid), then reap it."""
    pids: set[int] = set()
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(proc.pid)
        pids = {root.pid, *(c.pid for c in root.children(recursive=True))}
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # the group is proc's own (start_new_session): nothing else is in it
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=15)


@dataclass
class Node:
    name: str
    proc: subprocess.Popen
    log: Path
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class LocalCluster:
    """Head (0 CPUs: only the driver, dashboard and job supervisor) plus worker nodes added by name.

    Token authentication, as on the RayCluster (authOptions.mode: token) and Ray's default: every
    node, `ray job submit` and the state queries here carry the same fresh RAY_AUTH_TOKEN."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.token = secrets.token_hex(32)
        self.env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        self.nodes: dict[str, Node] = {}
        self.gcs_port, self.dashboard_port = free_ports(2)
        self.gcs = f"{NODE_IP}:{self.gcs_port}"
        self.dashboard = f"http://{NODE_IP}:{self.dashboard_port}"

    # -- processes ------------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None,
               temp_name: str | None = None) -> Node:
        temp_dir = self.root / (temp_name or name)
        temp_dir.mkdir(parents=True, exist_ok=True)
        node_mgr, obj_mgr, agent, agent_grpc, metrics, runtime_env = free_ports(6)
        log = self.root / f"{temp_name or name}.log"
        cmd = [RAY, "start", "--block", f"--temp-dir={temp_dir}", f"--node-ip-address={NODE_IP}",
               f"--node-manager-port={node_mgr}", f"--object-manager-port={obj_mgr}",
               f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
               f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
               "--object-store-memory=200000000", "--disable-usage-stats", *args]
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, env={**self.env, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        node = Node(name, proc, log)
        self.nodes[name] = node
        return node

    def start_head(self, timeout: float = 180) -> None:
        (client,) = free_ports(1)
        self._spawn("head", ["--head", f"--port={self.gcs_port}", "--num-cpus=0", "--include-dashboard=true",
                             f"--dashboard-host={NODE_IP}", f"--dashboard-port={self.dashboard_port}",
                             f"--ray-client-server-port={client}"], env=FAST_HEALTH_CHECKS)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive("head")
            try:
                self._get("/api/version", timeout=3)
                return
            except urllib.error.HTTPError:
                raise  # it answers, but refuses us (authentication): waiting will not help
            except OSError:
                time.sleep(1)
        raise TimeoutError(f"Ray dashboard did not answer at {self.dashboard} within {timeout:.0f} s:\n"
                           f"{self.tail('head')}")

    def add_worker(self, name: str, cpus: int, timeout: float = 180, attempts: int = 3) -> Node:
        """A worker node with ``cpus`` logical CPUs and the custom resource ``{name: 1}``; waits
        until the GCS lists it alive. `ray start` gives its raylet a fixed 30 s to register with the
        GCS and exits when that runs out, which happens on an overloaded machine: then it is tried
        again (what is left of the failed try is killed first)."""
        for attempt in range(1, attempts + 1):
            node = self._spawn(name, [f"--address={self.gcs}", f"--num-cpus={cpus}",
                                      f"--resources={json.dumps({name: 1})}"], temp_name=f"{name}-{attempt}")
            node.resources = {"CPU": float(cpus), name: 1.0}
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and node.alive:
                try:
                    if name in self.alive_labels():
                        return node
                except OSError:  # the head's dashboard is briefly unreachable on an overloaded box
                    pass
                time.sleep(1)
            failure = self.tail(name)
            kill_tree(node.proc, signal.SIGKILL)
            if attempt == attempts:
                raise TimeoutError(f"worker node {name} did not join in {attempts} tries:\n{failure}\n"
                                   f"head dashboard log:\n{self.dashboard_log()}")
        raise AssertionError("unreachable")

    def kill(self, name: str) -> None:
        """SIGKILL a node's whole process tree (raylet, agents, its Ray workers): a lost machine."""
        kill_tree(self.nodes[name].proc, signal.SIGKILL)

    def shutdown(self) -> None:
        """Worker nodes first, then the head: SIGTERM, then SIGKILL whatever is left."""
        order = [n for n in self.nodes if n != "head"] + (["head"] if "head" in self.nodes else [])
        for name in order:
            node = self.nodes[name]
            kill_tree(node.proc, signal.SIGTERM)
            kill_tree(node.proc, signal.SIGKILL)

    def _check_alive(self, name: str) -> None:
        node = self.nodes[name]
        if not node.alive:
            raise RuntimeError(f"`ray start` of node {name} exited with {node.proc.returncode}:\n{self.tail(name)}")

    def dashboard_log(self, chars: int = 3000) -> str:
        logs = sorted((self.root / "head").glob("session_*/logs/dashboard.*"))
        return "\n".join(f"{p.name}: {p.read_text(errors='replace')[-chars:]}" for p in logs) or "(none)"

    def tail(self, name: str, chars: int = 4000) -> str:
        try:
            return self.nodes[name].log.read_text()[-chars:]
        except OSError as e:
            return f"(no log: {e})"

    # -- state --------------------------------------------------------------------------------
    def _get(self, path: str, timeout: float = 30, tries: int = 1) -> bytes:
        """GET from the dashboard; ``tries`` > 1 retries dropped connections and 5xx answers (an
        overloaded head drops some), never a 4xx."""
        request = urllib.request.Request(f"{self.dashboard}{path}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        for attempt in range(1, tries + 1):
            try:
                with urllib.request.urlopen(request, timeout=timeout) as r:
                    return r.read()
            except urllib.error.HTTPError as e:
                if e.code < 500 or attempt == tries:
                    raise
            except OSError:
                if attempt == tries:
                    raise
            time.sleep(2)
        raise AssertionError("unreachable")

    def _state(self, what: str, **params: str) -> list[dict]:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return json.loads(self._get(f"/api/v0/{what}?{query}", tries=5))["data"]["result"]["result"]

    def node_states(self) -> list[dict]:
        return self._state("nodes", limit="1000", detail="1")

    def alive_labels(self) -> dict[str, str]:
        """{worker label: node_id} of the nodes the GCS reports ALIVE."""
        out = {}
        for n in self.node_states():
            if n.get("state") == "ALIVE":
                for label in self.nodes:
                    if (n.get("resources_total") or {}).get(label):
                        out[label] = n["node_id"]
        return out

    def labels_by_node_id(self) -> dict[str, str]:
        out = {}
        for n in self.node_states():
            for label in self.nodes:
                if (n.get("resources_total") or {}).get(label):
                    out[n["node_id"]] = label
        return out

    def actors(self, class_name: str) -> list[dict]:
        """Actors of ``class_name`` the GCS remembers (dead ones included), with their node_id."""
        return [a for a in self._state("actors", limit="10000", detail="1") if a.get("class_name") == class_name]

    def job_id(self, submission_id: str) -> str:
        """The Ray job id (hex) of a `ray job submit` submission: the driver's job, which owns its actors."""
        return json.loads(self._get(f"/api/jobs/{submission_id}", tries=5))["job_id"]

    def job_actors(self, submission_id: str, class_name: str | None = None) -> list[dict]:
        """The actors (of ``class_name``, or all) the submission's job created, dead ones included."""
        job = self.job_id(submission_id)
        actors = self.actors(class_name) if class_name else self._state("actors", limit="10000", detail="1")
        return [a for a in actors if a.get("job_id") == job]

    def wait_dead(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if name not in self.alive_labels():
                return
            time.sleep(1)
        raise TimeoutError(f"the GCS still lists node {name} alive {timeout:.0f} s after it was killed")


def new_root() -> Path:
    """A short private directory under /tmp (raylet socket paths are limited to 107 characters)."""
    return Path(tempfile.mkdtemp(prefix="raymn-", dir="/tmp"))


def submission_id(output: str) -> str:
    """The submission id `ray job submit` prints (``Job 'raysubmit_...' submitted successfully``)."""
    match = re.search(r"Job '(raysubmit_[^']+)'", output)
    if not match:
        raise ValueError(f"no submission id in the output of `ray job submit`:\n{output[-3000:]}")
    return match.group(1)
