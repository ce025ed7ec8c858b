"""Certificates of the self-signed mode: a CA per target and leaves it issues.

``cryptography`` is used when importable, otherwise the ``openssl`` CLI (1.1.1 or newer);
set HOSTCTL_NO_CRYPTOGRAPHY=1 to force the openssl path (tests).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import tempfile
from dataclasses import dataclass

from gin_deploy.agent.files import write_file
from gin_deploy.agent.output import HostError
from gin_deploy.agent.processes import run_cmd, tool

CA_DAYS = 3650


def have_cryptography() -> bool:
    if os.environ.get("HOSTCTL_NO_CRYPTOGRAPHY"):
        return False
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return False
    return True




@dataclass(frozen=True)
class CertInfo:
    sans: frozenset[str]  # "DNS:name" / "IP:addr"
    not_after: datetime.datetime  # UTC, aware


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 - runs on Python 3.9


class CertTool:
    """Creates the self-signed CA and leaf certificates."""

    def create_ca(self, cert: str, key: str, common_name: str) -> None:
        raise NotImplementedError

    def create_leaf(self, ca_cert: str, ca_key: str, cert: str, key: str,
                    sans: frozenset[str], days: int) -> None:
        raise NotImplementedError

    def inspect(self, cert: str) -> CertInfo:
        raise NotImplementedError


class CryptographyCertTool(CertTool):
    def create_ca(self, cert: str, key: str, common_name: str) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        pkey = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = utcnow()
        ski = x509.SubjectKeyIdentifier.from_public_key(pkey.public_key())
        crt = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(pkey.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(pkey, hashes.SHA256())
        )
        write_file(key, pkey.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()), 0o600)
        write_file(cert, crt.public_bytes(serialization.Encoding.PEM), 0o644)

    def create_leaf(self, ca_cert: str, ca_key: str, cert: str, key: str,
                    sans: frozenset[str], days: int) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        with open(ca_cert, "rb") as fh:
            ca = x509.load_pem_x509_certificate(fh.read())
        with open(ca_key, "rb") as fh:
            ca_pkey = serialization.load_pem_private_key(fh.read(), password=None)
        pkey = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for san in sorted(sans):
            kind, _, value = san.partition(":")
            if kind == "IP":
                names.append(x509.IPAddress(ipaddress.ip_address(value)))
            else:
                names.append(x509.DNSName(value))
        first = next((s.partition(":")[2] for s in sorted(sans) if s.startswith("DNS:")),
                     "localhost")
        now = utcnow()
        crt = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first)]))
            .issuer_name(ca.subject).public_key(pkey.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(pkey.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca.public_key()), critical=False)  # type: ignore[arg-type]
            .sign(ca_pkey, hashes.SHA256())  # type: ignore[arg-type]
        )
        write_file(key, pkey.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()), 0o600)
        write_file(cert, crt.public_bytes(serialization.Encoding.PEM), 0o644)

    def inspect(self, cert: str) -> CertInfo:
        from cryptography import x509

        with open(cert, "rb") as fh:
            crt = x509.load_pem_x509_certificate(fh.read())
        sans: set[str] = set()
        try:
            ext = crt.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            sans.update("DNS:" + n.lower() for n in ext.get_values_for_type(x509.DNSName))
            sans.update("IP:" + str(ip) for ip in ext.get_values_for_type(x509.IPAddress))
        except x509.ExtensionNotFound:
            pass
        not_after = getattr(crt, "not_valid_after_utc", None)  # cryptography >= 42
        if not_after is None:
            not_after = crt.not_valid_after.replace(tzinfo=datetime.timezone.utc)  # noqa: UP017
        return CertInfo(frozenset(sans), not_after)


class OpensslCertTool(CertTool):
    """Fallback when cryptography is not importable: the openssl CLI (1.1.1 or newer)."""

    def _cnf(self, workdir: str, cn: str, sans: frozenset[str] = frozenset()) -> str:
        alt = ",".join(f"{'IP' if s.startswith('IP:') else 'DNS'}:{s.partition(':')[2]}"
                       for s in sorted(sans)) or "DNS:localhost"
        text = (
            "[req]\ndistinguished_name = dn\nprompt = no\n"
            f"[dn]\nCN = {cn}\n"
            "[ca_ext]\nbasicConstraints = critical,CA:TRUE,pathlen:0\n"
            "keyUsage = critical,digitalSignature,keyCertSign,cRLSign\n"
            "subjectKeyIdentifier = hash\n"
            "[leaf_ext]\nbasicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature\n"
            "extendedKeyUsage = serverAuth\n"
            f"subjectAltName = {alt}\n"
            "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid,issuer\n"
        )
        path = os.path.join(workdir, "openssl.cnf")
        write_file(path, text, 0o600)
        return path

    def _genkey(self, path: str) -> None:
        openssl = tool("openssl")
        run_cmd([openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", path], "openssl genpkey")
        os.chmod(path, 0o600)

    def create_ca(self, cert: str, key: str, common_name: str) -> None:
        openssl = tool("openssl")
        with tempfile.TemporaryDirectory() as tmp:
            cnf = self._cnf(tmp, common_name)
            tkey, tcrt = os.path.join(tmp, "ca.key"), os.path.join(tmp, "ca.crt")
            self._genkey(tkey)
            run_cmd([openssl, "req", "-x509", "-new", "-key", tkey, "-sha256", "-days",
                     str(CA_DAYS), "-config", cnf, "-extensions", "ca_ext", "-out", tcrt],
                    "openssl req (CA)")
            with open(tkey, "rb") as fh:
                write_file(key, fh.read(), 0o600)
            with open(tcrt, "rb") as fh:
                write_file(cert, fh.read(), 0o644)

    def create_leaf(self, ca_cert: str, ca_key: str, cert: str, key: str,
                    sans: frozenset[str], days: int) -> None:
        openssl = tool("openssl")
        first = next((s.partition(":")[2] for s in sorted(sans) if s.startswith("DNS:")),
                     "localhost")
        with tempfile.TemporaryDirectory() as tmp:
            cnf = self._cnf(tmp, first, sans)
            tkey, csr, tcrt = (os.path.join(tmp, n) for n in ("leaf.key", "leaf.csr", "leaf.crt"))
            self._genkey(tkey)
            run_cmd([openssl, "req", "-new", "-key", tkey, "-config", cnf, "-out", csr],
                    "openssl req (leaf)")
            serial = "0x" + os.urandom(16).hex()
            run_cmd([openssl, "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
                     "-set_serial", serial, "-days", str(days), "-sha256", "-extfile", cnf,
                     "-extensions", "leaf_ext", "-out", tcrt], "openssl x509 (leaf)")
            with open(tkey, "rb") as fh:
                write_file(key, fh.read(), 0o600)
            with open(tcrt, "rb") as fh:
                write_file(cert, fh.read(), 0o644)

    def inspect(self, cert: str) -> CertInfo:
        openssl = tool("openssl")
        out = run_cmd([openssl, "x509", "-in", cert, "-noout", "-enddate", "-ext",
                       "subjectAltName"], "openssl x509 (inspect)").stdout
        m = re.search(r"notAfter=(.+)", out)
        if not m:
            raise HostError(f"cannot read the expiry of {cert}")
        not_after = datetime.datetime.strptime(m.group(1).strip(), "%b %d %H:%M:%S %Y %Z")
        sans: set[str] = set()
        for item in re.findall(r"(DNS:[^,\s]+|IP Address:[^,\s]+)", out):
            kind, _, value = item.partition(":")
            sans.add(("IP:" if kind.startswith("IP") else "DNS:") + value.lower())
        return CertInfo(frozenset(sans),
                        not_after.replace(tzinfo=datetime.timezone.utc))  # noqa: UP017


def cert_tool() -> CertTool:
    return CryptographyCertTool() if have_cryptography() else OpensslCertTool()


