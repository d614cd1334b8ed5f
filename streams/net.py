"""Addresses: which hosts and endpoints are loopback, the one rule every part of the project uses."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def host_is_loopback(host: str) -> bool:
    """True for localhost and addresses in 127.0.0.0/8, ::1 or IPv4-mapped 127.0.0.0/8 (brackets allowed);
    False for '*', '0.0.0.0', an interface name or any other DNS name."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def endpoint_host(endpoint: str) -> str:
    """The host of a `tcp://HOST:PORT` endpoint ('' for ipc:// and inproc://)."""
    if not endpoint.startswith("tcp://"):
        return ""
    return urlsplit(endpoint).hostname or endpoint[len("tcp://"):].rsplit(":", 1)[0]


def is_loopback(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// endpoints on a loopback host."""
    return not endpoint.startswith("tcp://") or host_is_loopback(endpoint_host(endpoint))
