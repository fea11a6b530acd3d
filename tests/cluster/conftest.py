"""A simulated Ray cluster for the cluster tests: a head that runs nothing (0 CPUs) and two nodes
declaring one fake GPU each (workers still run torch on the CPU), all bound to 127.0.0.1. One per
module; every Ray process it starts is stopped at the end (and checked)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
LOOPBACK = "127.0.0.1"


def ray_processes() -> list[str]:
    """Ray daemons (raylet, gcs_server) descended from this process, still running (read from /proc)."""
    parent, name = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        if fields[0] == "Z":
            continue
        pid = int(stat.parent.name)
        parent[pid], name[pid] = int(fields[1]), comm

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parent.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    return [f"{n}[{pid}]" for pid, n in name.items() if ("raylet" in n or "gcs_server" in n) and descends(pid)]


@pytest.fixture(scope="module")
def cluster():
    """``(Cluster, ray)``: the head and two one-GPU nodes, with this process connected."""
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)                  # before ray is imported: it reads them then
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    sim = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "node_ip_address": LOOPBACK,
                                                        "object_store_memory": 200 * 2**20})
    try:
        for _ in range(2):
            sim.add_node(num_cpus=1, num_gpus=1, node_ip_address=LOOPBACK, object_store_memory=200 * 2**20)
        ray.init(address=sim.address, _node_ip_address=LOOPBACK, log_to_driver=False)
        sim.wait_for_nodes()
        yield sim, ray
    finally:
        ray.shutdown()
        sim.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert not ray_processes(), "Ray processes left running"
