"""Ask a target's public URL what it serves: the certificate (a TLS handshake) and the
version (GET /version), the way a user's client would reach it."""

from __future__ import annotations

import datetime
import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

TIMEOUT = 10.0


@dataclass(frozen=True)
class ServedCert:
    issuer: str
    not_after: datetime.datetime
    trusted: bool
    error: str | None = None  # why it is not trusted

    def days_left(self, now: datetime.datetime | None = None) -> float:
        now = now or datetime.datetime.now(datetime.UTC)
        return round((self.not_after - now).total_seconds() / 86400, 1)


def _context(ca_pem: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca_pem) if ca_pem else \
        ssl.create_default_context()


def _endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"not an https URL: {url!r}")
    return parts.hostname, parts.port or 443


def _issuer(cert: x509.Certificate) -> str:
    names = cert.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) or \
        cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.issuer.rfc4514_string()


def _handshake(host: str, port: int, context: ssl.SSLContext) -> bytes:
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock, \
            context.wrap_socket(sock, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server sent no certificate")
    return der


def served_cert(url: str, ca_pem: str | None = None) -> ServedCert:
    """The leaf certificate served at `url`'s host and port. Verified against `ca_pem` (a
    dev stack's own CA) or the system's roots; an untrusted one is still read and
    reported with why. Raises OSError when nothing answers."""
    host, port = _endpoint(url)
    trusted, error = True, None
    try:
        der = _handshake(host, port, _context(ca_pem))
    except ssl.SSLCertVerificationError as exc:
        trusted, error = False, exc.verify_message or str(exc)
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # only to read what is served, never to send
        der = _handshake(host, port, insecure)
    cert = x509.load_der_x509_certificate(der)
    return ServedCert(_issuer(cert), cert.not_valid_after_utc, trusted, error)


def served_version(url: str, ca_pem: str | None = None) -> str:
    """The `version` the live service reports at GET <url>/version."""
    host, port = _endpoint(url)
    conn = http.client.HTTPSConnection(host, port, context=_context(ca_pem), timeout=TIMEOUT)
    try:
        conn.request("GET", urlsplit(url).path.rstrip("/") + "/version")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise OSError(f"GET /version answered {resp.status}")
    try:
        return str(json.loads(body)["version"])
    except (ValueError, KeyError, TypeError):
        raise OSError("GET /version did not answer JSON with a version") from None
