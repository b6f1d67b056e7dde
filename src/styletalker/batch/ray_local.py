"""A Ray cluster of several nodes on this machine, on 127.0.0.1, for the tests and benchmarks.

    with local_cluster(nodes=2, cpus=1) as cluster:
        run_batch("jobs.yaml", "out", ray=cluster.address)

Each node is a real raylet (``ray.cluster_utils.Cluster``, Ray's own helper for testing
multi-node behaviour on one machine) with its own worker processes; the first is the head.
A driver (``ray.init`` / ``styletalker batch --ray``) stays on 127.0.0.1 only when
:data:`LOOPBACK_ENV` was set before it imported ray: run it in a process started inside
:func:`loopback_env`, or set the variables first thing.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

# Ray turns 127.0.0.1 into the machine's outward address, which a sandboxed machine may not let a
# process reach; with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 it keeps loopback addresses. No usage
# statistics are sent.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@contextmanager
def loopback_env():
    """:data:`LOOPBACK_ENV` set in this process (and so in the processes it starts) while inside."""
    old = {k: os.environ.get(k) for k in LOOPBACK_ENV}
    os.environ.update(LOOPBACK_ENV)
    try:
        yield dict(LOOPBACK_ENV)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def local_cluster(nodes: int = 2, cpus: float = 1, object_store_mb: int = 80):
    """Start a head and ``nodes - 1`` more nodes of ``cpus`` CPUs each; yield the
    ``ray.cluster_utils.Cluster`` (``.address``, ``.head_node``, ``.worker_nodes``); stop them all
    on exit."""
    node = {"num_cpus": cpus, "node_ip_address": "127.0.0.1", "object_store_memory": object_store_mb * 1024 ** 2}
    with loopback_env():
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
        try:
            for _ in range(nodes - 1):
                cluster.add_node(**node)
            yield cluster
        finally:
            cluster.shutdown()
