"""Values of the Helm charts a `kubernetes` target installs (NGINX Gateway Fabric,
cert-manager): pure functions of plain values."""

from __future__ import annotations

import ipaddress
from typing import Any

__all__ = ["cert_manager_values", "gateway_fabric_values"]


def gateway_fabric_values(class_name: str, trusted_proxies: tuple[str, ...],
                          client_ip_mode: str) -> dict[str, Any]:
    """NGINX Gateway Fabric chart values; real client IPs from the load balancer in front."""
    nginx: dict[str, Any] = {
        # Local keeps the client's address on the way in through the cloud load balancer.
        "service": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
    }
    if trusted_proxies:
        nginx["config"] = {"rewriteClientIP": {
            "mode": client_ip_mode,
            "setIPRecursively": True,
            "trustedAddresses": [
                {"type": "CIDR", "value": str(ipaddress.ip_network(c, strict=False))}
                for c in trusted_proxies],
        }}
    return {
        "nginxGateway": {"gatewayClassName": class_name,
                         "productTelemetry": {"enable": False}},
        "nginx": nginx,
    }


def cert_manager_values() -> dict[str, Any]:
    """cert-manager chart values: its CRDs, and the Gateway API HTTP-01 solver enabled."""
    return {
        "crds": {"enabled": True, "keep": True},
        "config": {
            "apiVersion": "controller.config.cert-manager.io/v1alpha1",
            "kind": "ControllerConfiguration",
            "gatewayAPI": {"enabled": True},
        },
    }
