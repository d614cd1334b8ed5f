"""`start_local_ray`: a Ray of our own on this machine (no `ray.address`), whose servers listen on 127.0.0.1.

Ray gives a node the address other machines reach it by, and its servers (GCS, raylet, object manager, each
worker's gRPC server) listen there: on a host with a network, on every interface. Asking for 127.0.0.1
(`ray.init(_node_ip_address=...)`) does not help in Ray 2.60: `resolve_ip_for_localhost` swaps a loopback
address for the host's so that other nodes could join. The one switch Ray reads is
`ray_constants.ENABLE_RAY_CLUSTER` (environment `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`, on by default on Linux,
off on macOS and Windows): off, the node's address is loopback and every server binds 127.0.0.1. It is
turned off here while Ray starts, and the node's address is checked afterwards, so a Ray that stops
honouring it is reported, not trusted (`tests/ray_pipeline/test_ray_exposure.py` lists the listening
sockets of every Ray process).

`allow_remote=True` starts Ray as it starts by default (the node's network address; other machines may join
with `ray start --address`). Ray 2.60's token authentication guards those ports either way.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from streams.net import host_is_loopback

log = logging.getLogger(__name__)

CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _single_machine() -> Iterator[None]:
    """Ray's cluster switch off in this process and in what it starts, then back as it was."""
    from ray._private import ray_constants

    saved, saved_env = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(CLUSTER_SWITCH)
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[CLUSTER_SWITCH] = "0"  # GCS, raylet and the workers they start inherit it
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(CLUSTER_SWITCH, None)
        else:
            os.environ[CLUSTER_SWITCH] = saved_env


def start_local_ray(*, num_cpus: int | None = None, allow_remote: bool = False, **init: Any) -> str:
    """Start a new Ray on this machine (`ray.init(address="local")` with `init`); returns the node's address.
    Always a new one: without "local", `ray.init` joins the latest `ray start` instance of the machine (or
    `RAY_ADDRESS`), which is not what a config saying `ray.address: null` asks for. Loopback only unless
    `allow_remote`; if Ray ends up on another address anyway, says so in one warning."""
    import ray

    if allow_remote:
        ray.init(address="local", num_cpus=num_cpus, **init)
    else:
        with _single_machine():
            ray.init(address="local", num_cpus=num_cpus, **init)
    node = ray.util.get_node_ip_address()
    if not allow_remote and not host_is_loopback(node):
        log.warning("Ray's node address is %s, not 127.0.0.1: its ports listen beyond this machine "
                    "(guarded by Ray's token authentication)", node)
    return node
