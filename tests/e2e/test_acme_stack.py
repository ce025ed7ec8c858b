"""The ACME variant through the real engine: `tls.mode: acme` against a local Pebble."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from gin_deploy import automation
from tests.e2e.conftest import Project
from tests.host.test_acme_pebble import Pebble, start_pebble, stop_pebble

pytestmark = [pytest.mark.e2e, pytest.mark.host]
STACK = "acme"


@pytest.fixture(scope="module")
def pebble(project: Project) -> Iterator[Pebble]:
    peb = start_pebble(project.root.parent / "pebble", http_port=project.http_port)
    try:
        yield peb
    finally:
        stop_pebble(peb)


def served_leaf(project: Project, root_pem: str) -> Any:
    from cryptography import x509

    ctx = ssl.create_default_context(cadata=root_pem)  # verifies chain and name
    with socket.create_connection(("127.0.0.1", project.https_port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_up_in_acme_mode_serves_a_certificate_issued_by_pebble(
        project: Project, pebble: Pebble) -> None:
    (project.root / "pebble-ca.pem").write_text(pebble.tls_ca)
    config = project.dev_config()
    config["gin-deploy:tls"] = {"mode": "acme", "acme": {
        "email": "ops@example.com", "server": pebble.directory, "caBundle": "pebble-ca.pem"}}
    project.write_stack_file(STACK, config)
    automation.up(STACK, settings=project.settings)
    leaf = served_leaf(project, pebble.root())
    assert "Pebble" in leaf.issuer.rfc4514_string()
    assert leaf.serial_number in pebble.issued()
    again = automation.up(STACK, settings=project.settings)
    assert not again.changed and len(pebble.issued()) == 1


def test_destroy_the_acme_stack(project: Project) -> None:
    automation.destroy(STACK, settings=project.settings)
    assert not project.state_dir.exists()
