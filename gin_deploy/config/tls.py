"""`gin-deploy:tls`: how host certificates are issued, and the HSTS policy of every target.

The ACME challenge is decided per stack: HTTP-01 proves a name by a request to it,
which reaches the target asking only when that target alone answers the name. With
more than one target behind the domain (weighted records, a standby) or CloudFront
in front, the CA's request lands on any of them, so such stacks prove names by
DNS-01 in the Route 53 zone instead - the default there, and HTTP-01 a config error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from gin_deploy.config.schema import NAMESPACE, ParseContext, Problems, fill, spec_field

if TYPE_CHECKING:
    from gin_deploy.config.stack import StackConfig
    from gin_deploy.config.target import TargetBase

HTTP_01, DNS_01_ROUTE53 = "http-01", "dns-01-route53"

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
    # Resolved by the stack parse (it depends on the targets and the edge).
    challenge: str = spec_field(
        "challenge", "How the CA checks the names: `http-01` (a request to each name, which "
        "must reach the target asking) or `dns-01-route53` (a TXT record in the Route 53 "
        "zone; kubernetes targets need `route53` credentials). Default: dns-01-route53 when "
        "more than one target serves the domain, edge.cdn is on or a target has route53 "
        "credentials, else http-01.", None,
        choices=(HTTP_01, DNS_01_ROUTE53))


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

    def resolve(self, cfg: StackConfig) -> TlsConfig:
        """With the ACME challenge decided (`cfg` has every section)."""
        if self.acme is None or self.acme.challenge is not None:
            return self
        wanted = shared_domain(cfg) or any(t.dns01_credentials for t in cfg.targets)
        challenge = DNS_01_ROUTE53 if wanted else HTTP_01
        return replace(self, acme=replace(self.acme, challenge=challenge))

    def check_stack(self, cfg: StackConfig, indexed: Sequence[tuple[int, TargetBase]],
                    problems: Problems) -> None:
        """HTTP-01 cannot prove a name several targets (or CloudFront) answer."""
        if self.mode != "acme" or self.acme is None or self.acme.challenge != HTTP_01:
            return
        issuing = [t.name for _i, t in indexed if t.acme_certificates]
        if issuing and shared_domain(cfg):
            front = "CloudFront" if cfg.edge is not None and cfg.edge.cdn else \
                f"{len(cfg.targets)} targets" if len(cfg.targets) > 1 else \
                f"{sum(t.tls_terminators for t in cfg.targets)} hosts"
            problems.add(f"{NAMESPACE}:tls.acme.challenge", f"http-01 cannot issue "
                         f"{cfg.domain!r} for {', '.join(issuing)}: {front} answer(s) it, so "
                         "the CA's request lands on any target; use dns-01-route53 (the "
                         "default for this stack)")

    def check(self, path: str, problems: Problems, ctx: ParseContext) -> None:
        # Resolved `acme` without an account can only be the user's explicit choice.
        if self.mode == "acme" and self.acme is None:
            problems.add(f"{path}.acme", "is required when tls.mode is acme (email and server)")
        if self.acme and self.acme.ca_bundle and \
                not (ctx.project_dir / self.acme.ca_bundle).is_file():
            problems.add(f"{path}.acme.caBundle", f"file {self.acme.ca_bundle!r} does not exist")


def shared_domain(cfg: StackConfig) -> bool:
    """More than one target (or machine of a fleet) serves the domain, or CloudFront does
    in front of them."""
    terminators = sum(t.tls_terminators for t in cfg.targets)
    return terminators > 1 or (cfg.edge is not None and cfg.edge.cdn)
