"""Throwaway test PKI (cryptography): a one-day CA and the server and client certificates
it signs."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    ca_pem: str
    ca_path: Path
    cert_path: Path
    key_path: Path


def _validity() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class Ca:
    """A one-day CA that signs leaf certificates (EC P-256, SHA-256)."""

    def __init__(self, name: str = "gin-deploy test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        start, end = _validity()
        self.cert = (
            x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256()))

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def write(self, path: Path) -> Path:
        _write(path, self.pem.encode())
        return path

    def _leaf(self, subject: x509.Name, usage: x509.ObjectIdentifier,
              sans: Sequence[x509.GeneralName] = ()) -> tuple[x509.Certificate, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = _validity()
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key_pem(key)

    def server(self, cert_path: Path, key_path: Path, names: Sequence[str],
               ips: Sequence[str] = ("127.0.0.1",)) -> None:
        """A server certificate for `names` (the first is the CN) and `ips`."""
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        cert, key = self._leaf(subject, ExtendedKeyUsageOID.SERVER_AUTH, sans)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        _write(key_path, key)

    def client(self, cert_path: Path, key_path: Path, common_name: str,
               organizations: Sequence[str] = ()) -> None:
        """A client certificate: Kubernetes reads the user from the CN, groups from O."""
        subject = x509.Name(
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
            + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert, key = self._leaf(subject, ExtendedKeyUsageOID.CLIENT_AUTH)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        _write(key_path, key)


def issue(ca_path: Path, cert_path: Path, key_path: Path, names: Sequence[str],
          ips: Sequence[str] = ("127.0.0.1",), ca_name: str = "gin-deploy test CA") -> Pki:
    """Write a one-day CA and a server certificate for `names` and `ips`."""
    ca = Ca(ca_name)
    ca.write(ca_path)
    ca.server(cert_path, key_path, names, ips)
    return Pki(ca.pem, ca_path, cert_path, key_path)
