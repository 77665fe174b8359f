"""The local Ray instance guardray starts listens on the loopback interface only (issue 15,
item 7: it listened on all interfaces, ``gcs_server *:PORT``, raylet and worker ports).

A real local instance is started by `guardray.cli.ray_init.init_ray` in a fresh process (the
way every job starts it), runs tasks, and lists the listening TCP sockets of its processes
(the driver and everything it started: GCS server, raylet, workers, agents) with psutil.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, os, psutil, ray
from guardray.cli.ray_init import init_ray
from guardray.config.base import RayConfig

init_ray(RayConfig(num_cpus=1))

@ray.remote
def pid():
    return os.getpid()

workers = set(ray.get([pid.remote() for _ in range(3)]))
ray.data.range(10).map_batches(lambda b: b).materialize()  # Ray Data's processes too
me = psutil.Process()
procs = {p.pid: p for p in [me, *me.children(recursive=True)]}
listening = []
for conn in psutil.net_connections(kind="inet"):
    if conn.status == psutil.CONN_LISTEN and conn.pid in procs:
        try:
            name = procs[conn.pid].name()
        except psutil.Error:
            continue
        listening.append([name, conn.laddr.ip, conn.laddr.port])
print("PROBE" + json.dumps({"listening": listening, "workers": len(workers & set(procs)),
                            "node_ip": ray.util.get_node_ip_address()}))
ray.shutdown()
"""

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def test_a_local_instance_listens_on_loopback_only(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("PROBE"))
    probe = json.loads(line[len("PROBE"):])
    names = {name for name, _, _ in probe["listening"]}
    assert {"gcs_server", "raylet"} <= names, probe  # the servers were seen
    exposed = [entry for entry in probe["listening"] if entry[1] not in LOOPBACK]
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert probe["node_ip"] == "127.0.0.1" and probe["workers"] >= 1


def test_local_paths_are_refused_on_a_cluster_of_several_nodes():
    """Workers on other nodes cannot read the driver's disk: a local output location on a
    multi-node cluster is a ConfigError naming the field, unless the filesystem is shared."""
    from types import SimpleNamespace

    from guardray.cli.ray_init import check_shared_storage
    from guardray.config.base import RayConfig
    from guardray.errors import ConfigError

    job = SimpleNamespace(output_dir="outputs/run1", storage_path="s3://b/ray", log_dir=None)
    with pytest.raises(ConfigError, match=r"output_dir: 'outputs/run1' is a path on the "
                                          r"driver's machine, but the Ray cluster has 2 nodes"):
        check_shared_storage(RayConfig(), job, nodes=2)
    check_shared_storage(RayConfig(), job, nodes=1)  # one node: its disk is everyone's
    check_shared_storage(RayConfig(shared_filesystem=True), job, nodes=3)
    check_shared_storage(RayConfig(), SimpleNamespace(output_dir="s3://b/run1"), nodes=3)
    with pytest.raises(ConfigError, match="log_dir"):
        check_shared_storage(RayConfig(), SimpleNamespace(output_dir="s3://b/x",
                                                          log_dir="/tmp/tb"), nodes=2)
