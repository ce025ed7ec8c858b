"""`gin-deploy:tls`: how host certificates are issued, and the HSTS policy of every target."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlparse

from gin_deploy.config.schema import ParseContext, Problems, fill, spec_field

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _email(value: str) -> str | None:
    return None if _EMAIL.match(value) else f"must be an email address, got {value!r}"


def _acme_server(value: str) -> str | None:
    url = urlparse(value)
    if url.scheme == "https" and url.hostname:
        return None
    if url.scheme == "http" and url.hostname in _LOCAL_HOSTS:
        return None  # a local test CA such as Pebble
    return f"must be an https:// ACME directory URL (http only for localhost), got {value!r}"


@dataclass(frozen=True)
class AcmeConfig:
    email: str = spec_field("email", "Account email for the ACME CA.", check=_email)
    server: str = spec_field("server", "ACME directory URL (Let's Encrypt by default; "
                             "staging or any RFC 8555 server).",
                             "https://acme-v02.api.letsencrypt.org/directory",
                             check=_acme_server)
    ca_bundle: str | None = spec_field("caBundle", "PEM file trusted for the ACME server "
                                       "itself (test servers such as Pebble).", None)


@dataclass(frozen=True)
class HstsConfig:
    max_age: int = spec_field("maxAge", "Strict-Transport-Security max-age, seconds.",
                              63072000, min=0, max=2 * 63072000)
    include_subdomains: bool = spec_field("includeSubDomains", "Add includeSubDomains.", True)
    preload: bool = spec_field("preload", "Add preload (only if you submit the domain).", False)


@dataclass(frozen=True)
class TlsConfig:
    # Resolved at construction: `acme` when an ACME account is given, else `self-signed`.
    mode: str = spec_field("mode", "Host certificates: `self-signed` (a per-stack local "
                           "CA) or `acme`; default `acme` when `acme` is set.", None,
                           choices=("self-signed", "acme"))
    acme: AcmeConfig | None = spec_field("acme", "ACME account and server.", None)
    hsts: HstsConfig = spec_field("hsts", "HSTS header policy.", default_factory=HstsConfig)

    def __post_init__(self) -> None:
        fill(self, mode="acme" if self.acme else "self-signed")

    def check(self, path: str, problems: Problems, ctx: ParseContext) -> None:
        # Resolved `acme` without an account can only be the user's explicit choice.
        if self.mode == "acme" and self.acme is None:
            problems.add(f"{path}.acme", "is required when tls.mode is acme (email and server)")
        if self.acme and self.acme.ca_bundle and \
                not (ctx.project_dir / self.acme.ca_bundle).is_file():
            problems.add(f"{path}.acme.caBundle", f"file {self.acme.ca_bundle!r} does not exist")
