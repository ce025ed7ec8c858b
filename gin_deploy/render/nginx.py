"""Render nginx configuration for the TLS reverse proxy in front of the Gin instances.

Security choices, briefly:

* TLS follows Mozilla's "intermediate" profile: TLS 1.2 and 1.3 only, the
  ECDHE AEAD suites for TLS 1.2, the client picks its preferred suite, and
  session tickets are off (they would defeat forward secrecy unless the ticket
  key is rotated). The DHE suites of the profile are left out so no dhparam
  file has to be generated and shipped; every client that can do DHE can do
  ECDHE. OCSP stapling is left out: Let's Encrypt no longer runs OCSP and a
  self-signed or internal chain would only produce warnings.
* The client address is only taken from a forwarding header when the
  connection comes from a configured trusted proxy; otherwise X-Forwarded-For
  is overwritten with the peer address so a client cannot forge it upstream.
* Responses carry HSTS and restrictive browser headers (it is a JSON API, so
  the Content-Security-Policy allows nothing), nginx hides its version, and
  copies of those headers coming from the app are dropped so there is exactly
  one of each.
* Failed connects, timeouts and 502/503/504 are retried on another instance,
  but only for idempotent requests (nginx's default; ``non_idempotent`` is
  deliberately absent), with bounded tries and time, so restarting one
  instance costs no request and a POST is never sent twice.
* The optional origin lock (a shared secret header a CDN adds) is compared as
  a literal string; values containing ``$`` are rejected because nginx would
  expand them as variables and there is no escape for it. Exact paths listed in
  ``origin_verify_exempt_paths`` (a health check's, which cannot send headers)
  stay reachable without it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from gin_deploy.render._jinja import (
    check_int,
    check_no_control,
    check_safe_path,
    make_environment,
)
from gin_deploy.render.headers import hsts_value

# Mozilla intermediate (v5.7) TLS 1.2 suites without the DHE ones (see module docstring).
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
TLS_CURVES = "X25519:prime256v1:secp384r1"

# hstspreload.org refuses shorter max-ages or a missing includeSubDomains.
HSTS_PRELOAD_MIN_AGE = 31536000
# How long nginx keeps an idle connection to an instance: below the app's IDLE_TIMEOUT
# (checked in config), so nginx never reuses a connection the app just closed.
UPSTREAM_KEEPALIVE_TIMEOUT_S = 30

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SERVER_NAME = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*\.?")
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# A subset of the RFC 9110 token: nginx exposes a header as $http_<name> only
# for letters, digits and '-', and drops names with '_' unless told otherwise.
_HEADER_NAME = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_NGINX_SIZE = re.compile(r"[0-9]+[kKmMgG]?")
_LOG_BUFFER = re.compile(r"[1-9][0-9]*[kKmM]?")
# Visible ASCII; '$' would be expanded as a variable by nginx and cannot be escaped.
_ORIGIN_VALUE = re.compile(r"[\x21-\x23\x25-\x7e]+")
_EXEMPT_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")


def _parse_port(field: str, text: str) -> None:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{field}: port {text!r} must be a number in 1..65535")


def _nginx_quote(value: str) -> str:
    """Double-quote a string for nginx's config parser (it unescapes \\" and \\\\)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _as_tuple(obj: object, field: str) -> None:
    """Accept lists for tuple fields (frozen dataclasses must stay hashable)."""
    value = getattr(obj, field)
    if isinstance(value, str | bytes):
        raise ValueError(f"{field}: expected a sequence of values, not a single string")
    object.__setattr__(obj, field, tuple(value))


@dataclass(frozen=True)
class UpstreamServer:
    """One app instance behind nginx."""

    address: str  # "127.0.0.1:9080", "[::1]:9080", "app.internal:9080" or "unix:/path"
    weight: int = 1
    backup: bool = False  # only used when every primary is down
    max_fails: int = 2  # failures within fail_timeout_s that take it out ...
    fail_timeout_s: int = 5  # ... for this long

    def __post_init__(self) -> None:
        address = self.address
        if not isinstance(address, str) or not address:
            raise ValueError("address: must be a non-empty string")
        if address.startswith("unix:"):
            check_safe_path("address", address.removeprefix("unix:"))
        elif address.startswith("["):
            host, sep, port = address[1:].partition("]:")
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"address: {address!r} has an invalid IPv6 address") from None
            if not sep:
                raise ValueError(f"address: {address!r} needs an explicit port")
            _parse_port("address", port)
        else:
            host, sep, port = address.rpartition(":")
            if not sep or not _HOSTNAME.fullmatch(host):
                raise ValueError(
                    f"address: {address!r} must be host:port, [ipv6]:port or unix:path"
                )
            _parse_port("address", port)
        check_int("weight", self.weight, minimum=1)
        check_int("max_fails", self.max_fails, minimum=0)
        check_int("fail_timeout_s", self.fail_timeout_s, minimum=1)


@dataclass(frozen=True)
class NginxSite:
    """Everything that varies between deployments of the proxied site."""

    name: str  # app name; sanitized to [a-z0-9_] for upstream/log_format/cache names
    server_names: tuple[str, ...]  # domain(s); may include "localhost"
    upstreams: tuple[UpstreamServer, ...]
    tls_certificate: str  # path to the full chain PEM
    tls_certificate_key: str
    access_log: str  # path; written as JSON lines
    error_log: str
    http_port: int = 80
    https_port: int = 443
    trusted_proxies: tuple[str, ...] = ()  # CIDRs for set_real_ip_from; empty = no real_ip
    real_ip_header: str = "X-Forwarded-For"
    hsts_max_age: int = 63072000  # two years
    hsts_include_subdomains: bool = True
    hsts_preload: bool = False
    acme_webroot: str | None = None  # when set, /.well-known/acme-challenge/ is served from it
    client_max_body_size: str = "1m"
    upstream_keepalive: int = 32  # idle connections kept open per worker
    proxy_connect_timeout_s: int = 2
    proxy_read_timeout_s: int = 30
    proxy_send_timeout_s: int = 30
    next_upstream_tries: int = 3
    next_upstream_timeout_s: int = 10
    origin_verify_header: str | None = None  # with a value: requests lacking it get 403
    origin_verify_value: str | None = None
    # Exact paths served without the header (health checks cannot send one).
    origin_verify_exempt_paths: tuple[str, ...] = ()
    # Additions beyond the original interface:
    ipv6: bool = True  # also listen on [::]; off for hosts/sandboxes without IPv6
    http_redirect_code: int = 308  # 308 keeps the method and body, 301 for ancient clients
    upstream_keepalive_requests: int = 1000
    # Below the app's idle timeout, so nginx never reuses a connection the app just closed.
    upstream_keepalive_timeout_s: int = UPSTREAM_KEEPALIVE_TIMEOUT_S
    client_timeout_s: int = 10  # client_header_timeout / client_body_timeout / send_timeout
    gzip_min_length: int = 1024  # smaller JSON bodies are not worth compressing
    # The access log is written per worker in chunks of this size instead of one write()
    # per request (bench/proxy.py), and at the latest after access_log_flush_ms, which
    # bounds how late a release's analysis (gin_deploy.agent.analysis) sees a request.
    access_log_buffer: str = "64k"
    access_log_flush_ms: int = 250
    # canary/blueGreen: where a new release starts beside `upstreams` (each pool is the
    # other's backup); the agent sends it a share of the requests by putting files in
    # candidate_share_dir (gin_deploy.agent.traffic).
    candidate_upstreams: tuple[UpstreamServer, ...] = ()
    candidate_share_dir: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.search(r"[A-Za-z0-9]", self.name):
            raise ValueError(f"name: {self.name!r} must contain at least one letter or digit")

        _as_tuple(self, "server_names")
        if not self.server_names:
            raise ValueError("server_names: at least one name is required")
        for server_name in self.server_names:
            if not isinstance(server_name, str) or not _SERVER_NAME.fullmatch(server_name):
                raise ValueError(f"server_names: {server_name!r} is not a valid host name")

        _as_tuple(self, "upstreams")
        if not self.upstreams:
            raise ValueError("upstreams: at least one server is required")
        if not all(isinstance(u, UpstreamServer) for u in self.upstreams):
            raise ValueError("upstreams: items must be UpstreamServer instances")
        if all(u.backup for u in self.upstreams):
            raise ValueError("upstreams: at least one server must not be a backup")
        addresses = [u.address for u in self.upstreams]
        if len(set(addresses)) != len(addresses):
            raise ValueError("upstreams: addresses must be unique")
        _as_tuple(self, "candidate_upstreams")
        if not all(isinstance(u, UpstreamServer) for u in self.candidate_upstreams):
            raise ValueError("candidate_upstreams: items must be UpstreamServer instances")
        candidates = [u.address for u in self.candidate_upstreams]
        if len(set(candidates)) != len(candidates) or set(candidates) & set(addresses):
            raise ValueError("candidate_upstreams: addresses must be unique and differ from "
                             "the upstreams'")
        if any(u.backup for u in self.candidate_upstreams):
            raise ValueError("candidate_upstreams: a candidate cannot be a backup")
        if bool(self.candidate_upstreams) != (self.candidate_share_dir is not None):
            raise ValueError("candidate_share_dir: set exactly when there are "
                             "candidate_upstreams")
        if self.candidate_share_dir is not None:
            check_safe_path("candidate_share_dir", self.candidate_share_dir)

        for field in ("tls_certificate", "tls_certificate_key", "access_log", "error_log"):
            check_safe_path(field, getattr(self, field))
        if self.acme_webroot is not None:
            check_safe_path("acme_webroot", self.acme_webroot)

        check_int("http_port", self.http_port, minimum=1, maximum=65535)
        check_int("https_port", self.https_port, minimum=1, maximum=65535)
        if self.http_port == self.https_port:
            raise ValueError("https_port: must differ from http_port")

        _as_tuple(self, "trusted_proxies")
        for cidr in self.trusted_proxies:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except (TypeError, ValueError):
                raise ValueError(
                    f"trusted_proxies: {cidr!r} is not an IP network (host bits must be zero)"
                ) from None
        if not _HEADER_NAME.fullmatch(self.real_ip_header or ""):
            raise ValueError(f"real_ip_header: {self.real_ip_header!r} is not a header name")

        check_int("hsts_max_age", self.hsts_max_age, minimum=0)
        if self.hsts_preload and not (
            self.hsts_include_subdomains and self.hsts_max_age >= HSTS_PRELOAD_MIN_AGE
        ):
            raise ValueError(
                "hsts_preload: requires hsts_include_subdomains and "
                f"hsts_max_age >= {HSTS_PRELOAD_MIN_AGE}"
            )

        if not isinstance(self.client_max_body_size, str) or not _NGINX_SIZE.fullmatch(
            self.client_max_body_size
        ):
            raise ValueError(
                f"client_max_body_size: {self.client_max_body_size!r} must look like 1m, 512k or 0"
            )
        check_int("upstream_keepalive", self.upstream_keepalive, minimum=1)
        check_int("upstream_keepalive_requests", self.upstream_keepalive_requests, minimum=1)
        check_int("upstream_keepalive_timeout_s", self.upstream_keepalive_timeout_s, minimum=1)
        check_int("proxy_connect_timeout_s", self.proxy_connect_timeout_s, minimum=1)
        check_int("proxy_read_timeout_s", self.proxy_read_timeout_s, minimum=1)
        check_int("proxy_send_timeout_s", self.proxy_send_timeout_s, minimum=1)
        # nginx reads 0 as "unlimited" for both; retries must stay bounded.
        check_int("next_upstream_tries", self.next_upstream_tries, minimum=1)
        check_int("next_upstream_timeout_s", self.next_upstream_timeout_s, minimum=1)
        check_int("client_timeout_s", self.client_timeout_s, minimum=1)
        check_int("gzip_min_length", self.gzip_min_length, minimum=0)
        if not isinstance(self.access_log_buffer, str) or not _LOG_BUFFER.fullmatch(
            self.access_log_buffer
        ):
            raise ValueError(
                f"access_log_buffer: {self.access_log_buffer!r} must look like 64k or 1m"
            )
        # Longer would let a bake be judged without its last requests.
        check_int("access_log_flush_ms", self.access_log_flush_ms, minimum=1, maximum=1000)
        if self.http_redirect_code not in (301, 308):
            raise ValueError(f"http_redirect_code: {self.http_redirect_code!r} must be 301 or 308")

        header, value = self.origin_verify_header, self.origin_verify_value
        if (header is None) != (value is None):
            raise ValueError(
                "origin_verify_header: origin_verify_header and origin_verify_value "
                "must be set together"
            )
        if header is not None and not _HEADER_NAME.fullmatch(header):
            raise ValueError(
                f"origin_verify_header: {header!r} must be a header name of letters, "
                "digits and single dashes"
            )
        _as_tuple(self, "origin_verify_exempt_paths")
        if self.origin_verify_exempt_paths and header is None:
            raise ValueError("origin_verify_exempt_paths: only applies with origin_verify_header")
        for path in self.origin_verify_exempt_paths:
            if not isinstance(path, str) or not _EXEMPT_PATH.fullmatch(path):
                raise ValueError(
                    f"origin_verify_exempt_paths: {path!r} must be an absolute path of "
                    "letters, digits and . _ ~ - /"
                )
        if value is not None:
            check_no_control("origin_verify_value", value)
            if not _ORIGIN_VALUE.fullmatch(value):
                raise ValueError(
                    "origin_verify_value: must be non-empty visible ASCII without spaces or '$'"
                )

    @property
    def ident(self) -> str:
        """The name as an nginx identifier: lower case, [a-z0-9_] only."""
        return re.sub(r"[^a-z0-9_]", "_", self.name.lower())

    @property
    def hsts_header(self) -> str:
        return hsts_value(self.hsts_max_age, self.hsts_include_subdomains, self.hsts_preload)

    @property
    def https_authority_suffix(self) -> str:
        """':port' to append to $host in redirects, empty for the default 443."""
        return "" if self.https_port == 443 else f":{self.https_port}"

    @property
    def origin_verify_variable(self) -> str | None:
        """The nginx variable holding the origin-verify request header."""
        if self.origin_verify_header is None:
            return None
        return "$http_" + self.origin_verify_header.lower().replace("-", "_")


_ENV = make_environment({"nginx_quote": _nginx_quote})


def render_site(site: NginxSite) -> str:
    """http{}-context snippet: log_format, upstream, HTTP server (redirect + ACME), HTTPS server."""
    return _ENV.get_template("nginx_site.conf.j2").render(
        site=site,
        tls12_ciphers=TLS12_CIPHERS,
        tls_curves=TLS_CURVES,
    )


def render_main_config(
    *,
    site_include: str,
    pid_file: str,
    error_log: str,
    temp_dir: str,
    worker_processes: str = "auto",
    worker_connections: int = 4096,
) -> str:
    """A standalone nginx.conf for an unprivileged nginx run by the deploy user.

    There is no ``user`` directive and every temp path is under ``temp_dir``
    (which must exist; nginx creates the sub-directories). nginx still opens
    its compiled-in error log before reading this file, so start it with
    ``-e <error_log>`` as well. ``site_include`` may be a glob.
    """
    for field, value in (
        ("site_include", site_include),
        ("pid_file", pid_file),
        ("error_log", error_log),
        ("temp_dir", temp_dir),
    ):
        # A glob is fine for the include; everything else must be a plain path.
        check_safe_path(field, value.replace("*", "x") if field == "site_include" else value)
    worker_processes = str(worker_processes)  # tolerate an int
    if worker_processes != "auto" and not (
        worker_processes.isdigit() and int(worker_processes) >= 1
    ):
        raise ValueError(f"worker_processes: {worker_processes!r} must be 'auto' or a number >= 1")
    check_int("worker_connections", worker_connections, minimum=16)
    return _ENV.get_template("nginx_main.conf.j2").render(
        site_include=site_include,
        pid_file=pid_file,
        error_log=error_log,
        temp_dir=temp_dir.rstrip("/") or "/",
        worker_processes=worker_processes,
        worker_connections=worker_connections,
    )
