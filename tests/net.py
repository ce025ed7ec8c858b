"""Loopback ports for the processes tests start (shared by the e2e and Kubernetes lanes)."""

from __future__ import annotations

import socket


def free_ports(n: int) -> list[int]:
    """n ports free on 127.0.0.1 right now (bound together, so all distinct)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()
