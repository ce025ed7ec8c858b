"""Loopback probes: free ports, readiness of an instance."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

from gin_deploy.agent.payload import Instance


def port_free(port: int, address: str | None = None) -> bool:
    """True when nothing listens on `port` (checked on 127.0.0.1 and 0.0.0.0, or only on
    `address` when the port will be bound there alone)."""
    hosts = (address,) if address else ("127.0.0.1", "0.0.0.0")  # noqa: S104 - probing
    for host in hosts:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def instance_url(inst: Instance, path: str) -> str:
    return f"http://127.0.0.1:{inst.port}{path}"


def probe(url: str, timeout: float = 1.0) -> bool:
    try:
        with _NO_PROXY_OPENER.open(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_ready(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if probe(url, timeout=min(1.0, max(0.1, deadline - time.monotonic()))):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)
