"""nginx renderer: directive-level unit tests, `nginx -t` on real configs, one live proxy run."""

from __future__ import annotations

import gzip
import http.client
import http.server
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gin_deploy.render.nginx import (
    TLS12_CIPHERS,
    NginxSite,
    UpstreamServer,
    render_main_config,
    render_site,
)
from tests.render.conftest import free_port, require_tool

# Placeholder paths for pure rendering tests; nothing is read or written there.
P = "/srv/hello-gin"


def make_site(**overrides: Any) -> NginxSite:
    fields: dict[str, Any] = {
        "name": "hello-gin",
        "server_names": ("example.com", "www.example.com"),
        "upstreams": (UpstreamServer("127.0.0.1:9080"), UpstreamServer("127.0.0.1:9081")),
        "tls_certificate": f"{P}/tls/fullchain.pem",
        "tls_certificate_key": f"{P}/tls/privkey.pem",
        "access_log": f"{P}/log/access.log",
        "error_log": f"{P}/log/error.log",
    }
    fields.update(overrides)
    return NginxSite(**fields)


def directives(text: str) -> list[str]:
    """Non-empty, non-comment lines with surrounding whitespace removed."""
    stripped = (line.strip() for line in text.splitlines())
    return [line for line in stripped if line and not line.startswith("#")]


def server_blocks(text: str) -> list[str]:
    """The text of each top-level `server { ... }` block, in order."""
    return re.findall(r"^server \{\n.*?^\}$", text, flags=re.S | re.M)


# ---------------------------------------------------------------- pure rendering


def test_upstream_block_balances_and_keeps_connections_alive() -> None:
    site = make_site(
        upstreams=(
            UpstreamServer("127.0.0.1:9080", weight=3, max_fails=4, fail_timeout_s=7),
            UpstreamServer("[::1]:9081"),
            UpstreamServer("127.0.0.1:9082", backup=True),
            UpstreamServer("unix:/run/hello-gin/app.sock"),
        ),
        upstream_keepalive=8,
    )
    text = render_site(site)
    block = re.search(r"^upstream hello_gin_backend \{\n(.*?)^\}$", text, re.S | re.M)
    assert block is not None
    lines = directives(block.group(1))
    assert lines[0] == "least_conn;"
    assert "server 127.0.0.1:9080 weight=3 max_fails=4 fail_timeout=7s;" in lines
    assert "server [::1]:9081 weight=1 max_fails=2 fail_timeout=5s;" in lines
    assert "server 127.0.0.1:9082 weight=1 max_fails=2 fail_timeout=5s backup;" in lines
    assert "server unix:/run/hello-gin/app.sock weight=1 max_fails=2 fail_timeout=5s;" in lines
    assert "keepalive 8;" in lines
    assert "keepalive_requests 1000;" in lines
    assert "keepalive_timeout 30s;" in lines


def test_proxy_location_retries_only_idempotent_requests_within_bounds() -> None:
    text = render_site(make_site(next_upstream_tries=2, next_upstream_timeout_s=4))
    lines = directives(server_blocks(text)[1])
    assert "proxy_pass http://hello_gin_backend;" in lines
    assert "proxy_http_version 1.1;" in lines
    assert 'proxy_set_header Connection "";' in lines
    assert "proxy_next_upstream error timeout http_502 http_503 http_504;" in lines
    assert "proxy_next_upstream_tries 2;" in lines
    assert "proxy_next_upstream_timeout 4s;" in lines
    # nginx's default exclusion of POST/PATCH/LOCK from retries must stay in force.
    assert "non_idempotent" not in text
    assert "proxy_connect_timeout 2s;" in lines
    assert "proxy_read_timeout 30s;" in lines
    assert "proxy_send_timeout 30s;" in lines
    assert "proxy_request_buffering on;" in lines
    assert "proxy_buffering on;" in lines


def test_forwarding_headers_without_trusted_proxies_cannot_be_forged() -> None:
    text = render_site(make_site())
    lines = directives(text)
    assert "proxy_set_header Host $host;" in lines
    assert "proxy_set_header X-Real-IP $remote_addr;" in lines
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in lines
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in lines
    assert "proxy_set_header X-Request-ID $request_id;" in lines
    assert "$proxy_add_x_forwarded_for" not in text
    assert not [line for line in lines if line.startswith(("set_real_ip_from", "real_ip_"))]
    assert "$realip_remote_addr" not in text


def test_trusted_proxies_enable_real_ip_and_append_to_forwarded_for() -> None:
    site = make_site(
        trusted_proxies=("10.0.0.0/8", "2001:db8::/32"), real_ip_header="CF-Connecting-IP"
    )
    text = render_site(site)
    https = directives(server_blocks(text)[1])
    assert "set_real_ip_from 10.0.0.0/8;" in https
    assert "set_real_ip_from 2001:db8::/32;" in https
    assert "real_ip_header CF-Connecting-IP;" in https
    assert "real_ip_recursive on;" in https
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in https
    assert "proxy_set_header X-Forwarded-For $remote_addr;" not in https
    # The log keeps both the peer and the client it vouched for.
    assert '\'"remote_addr":"$realip_remote_addr",\'' in text
    assert '\'"forwarded_for":"$http_cf_connecting_ip",\'' in text


def test_tls_follows_mozilla_intermediate() -> None:
    https = directives(server_blocks(render_site(make_site()))[1])
    assert "listen 443 ssl http2;" in https
    assert "listen [::]:443 ssl http2;" in https
    assert f"ssl_certificate {P}/tls/fullchain.pem;" in https
    assert f"ssl_certificate_key {P}/tls/privkey.pem;" in https
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in https
    assert f"ssl_ciphers {TLS12_CIPHERS};" in https
    assert all(c.startswith("ECDHE-") for c in TLS12_CIPHERS.split(":"))
    assert "ssl_prefer_server_ciphers off;" in https
    assert "ssl_session_cache shared:hello_gin_tls:10m;" in https
    assert "ssl_session_timeout 1d;" in https
    assert "ssl_session_tickets off;" in https


def test_security_headers_are_always_sent() -> None:
    text = render_site(make_site())
    https = directives(server_blocks(text)[1])
    expected = [
        'add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;',
        'add_header X-Content-Type-Options "nosniff" always;',
        'add_header X-Frame-Options "DENY" always;',
        'add_header Referrer-Policy "no-referrer" always;',
        "add_header Content-Security-Policy \"default-src 'none'; frame-ancestors 'none'\" always;",
    ]
    for line in expected:
        assert line in https
    # add_header in a location would silently drop the server-level ones.
    assert [line for line in directives(text) if line.startswith("add_header")] == expected
    for block in server_blocks(text):
        assert "server_tokens off;" in directives(block)


@pytest.mark.parametrize(
    ("overrides", "value"),
    [
        ({}, "max-age=63072000; includeSubDomains"),
        ({"hsts_include_subdomains": False, "hsts_max_age": 300}, "max-age=300"),
        ({"hsts_preload": True}, "max-age=63072000; includeSubDomains; preload"),
    ],
)
def test_hsts_value(overrides: dict[str, Any], value: str) -> None:
    assert f'add_header Strict-Transport-Security "{value}" always;' in render_site(
        make_site(**overrides)
    )


def test_request_limits_and_gzip() -> None:
    https = directives(server_blocks(render_site(make_site(client_max_body_size="4m")))[1])
    for line in (
        "client_max_body_size 4m;",
        "client_header_timeout 10s;",
        "client_body_timeout 10s;",
        "gzip on;",
        "gzip_types application/json;",
        "gzip_min_length 1024;",
        "gzip_vary on;",
    ):
        assert line in https


@pytest.mark.parametrize(
    ("https_port", "code", "target"),
    [
        (443, 308, "https://$host$request_uri"),
        (8443, 308, "https://$host:8443$request_uri"),
        (443, 301, "https://$host$request_uri"),
    ],
)
def test_http_server_redirects_everything(https_port: int, code: int, target: str) -> None:
    site = make_site(https_port=https_port, http_redirect_code=code)
    http_block = directives(server_blocks(render_site(site))[0])
    assert http_block[1:3] == ["listen 80;", "listen [::]:80;"]
    assert "server_name example.com www.example.com;" in http_block
    assert f"return {code} {target};" in http_block
    assert not [line for line in http_block if line.startswith(("proxy_", "ssl_"))]


def test_acme_webroot_is_served_on_http_and_exempt_from_the_origin_lock() -> None:
    site = make_site(
        acme_webroot="/var/lib/acme/webroot",
        origin_verify_header="X-Origin-Verify",
        origin_verify_value="s3cret",
    )
    http_block, https_block = server_blocks(render_site(site))
    for block in (http_block, https_block):
        acme = re.search(r"location \^~ /\.well-known/acme-challenge/ \{(.*?)\}", block, re.S)
        assert acme is not None
        assert directives(acme.group(1)) == [
            "root /var/lib/acme/webroot;",
            "default_type text/plain;",
            "try_files $uri =404;",
        ]
        assert "if (" not in acme.group(1)
    assert "acme-challenge" not in render_site(make_site())


def test_origin_verify_is_a_literal_comparison_with_escaped_value() -> None:
    site = make_site(origin_verify_header="X-Origin-Verify", origin_verify_value='a"b\\c{};#')
    https = server_blocks(render_site(site))[1]
    assert 'if ($http_x_origin_verify != "a\\"b\\\\c{};#") {' in https
    location = https[https.index("location / {") :]
    assert location.index("return 403;") < location.index("proxy_pass")


def test_origin_verify_exempt_paths_open_exactly_those_paths() -> None:
    site = make_site(origin_verify_header="X-Origin-Verify", origin_verify_value="s3cret",
                     origin_verify_exempt_paths=("/readyz",))
    https = server_blocks(render_site(site))[1]
    location = https[https.index("location / {") :]
    lock = directives(location[: location.index("proxy_pass")])
    assert lock[1:] == [
        'set $origin_lock_hello_gin "locked";',
        'if ($http_x_origin_verify = "s3cret") {', 'set $origin_lock_hello_gin "open";', "}",
        'if ($uri = "/readyz") {', 'set $origin_lock_hello_gin "open";', "}",
        'if ($origin_lock_hello_gin = "locked") {', "return 403;", "}",
    ]
    with pytest.raises(ValueError, match="origin_verify_exempt_paths"):
        make_site(origin_verify_exempt_paths=("/readyz",))
    for bad in ("readyz", "/ready z", '/a"b', "/$x"):
        with pytest.raises(ValueError, match="origin_verify_exempt_paths"):
            make_site(origin_verify_header="X-O", origin_verify_value="v",
                      origin_verify_exempt_paths=(bad,))


def test_ipv6_listens_can_be_turned_off() -> None:
    text = render_site(make_site(ipv6=False, http_port=8080, https_port=8443))
    listens = [line for line in directives(text) if line.startswith("listen")]
    assert listens == ["listen 8080;", "listen 8443 ssl http2;"]


def test_name_is_sanitized_for_nginx_identifiers() -> None:
    site = make_site(name="Hello-Gin.v2")
    assert site.ident == "hello_gin_v2"
    text = render_site(site)
    assert "upstream hello_gin_v2_backend {" in text
    assert "log_format hello_gin_v2_json escape=json" in text
    assert ("access_log /srv/hello-gin/log/access.log hello_gin_v2_json buffer=64k "
            "flush=250ms;") in text


def test_access_log_is_buffered_with_a_short_flush() -> None:
    """One write() per chunk instead of per request (bench/proxy.py measures it), and
    every line on disk within flush= so a release's bake still sees its requests."""
    text = render_site(make_site(access_log_buffer="128k", access_log_flush_ms=100))
    logs = [line for line in directives(text) if line.startswith("access_log")]
    assert logs == ["access_log /srv/hello-gin/log/access.log hello_gin_json buffer=128k "
                    "flush=100ms;"] * 2


@pytest.mark.parametrize("trusted", [(), ("10.0.0.0/8",)])
def test_log_format_is_valid_json_with_the_required_fields(trusted: tuple[str, ...]) -> None:
    text = render_site(make_site(trusted_proxies=trusted))
    block = re.search(r"^log_format \S+ escape=json (.*?);$", text, re.S | re.M)
    assert block is not None
    template = "".join(re.findall(r"'([^']*)'", block.group(1)))
    numeric = {"$status", "$body_bytes_sent", "$request_length", "$request_time"}
    sample = re.sub(r"\$[a-z_0-9]+", lambda m: "1" if m.group(0) in numeric else "x", template)
    record = json.loads(sample)
    for key in (
        "time",
        "request_id",
        "remote_addr",
        "client",
        "method",
        "uri",
        "status",
        "bytes_sent",
        "request_time",
        "upstream_addr",
        "upstream_status",
        "upstream_response_time",
        "ssl_protocol",
    ):
        assert key in record
    assert '"uri":"$uri"' in template  # the path only: query strings may carry secrets
    assert "$request_uri" not in template and "$args" not in template


def test_main_config_is_self_contained_for_an_unprivileged_nginx() -> None:
    text = render_main_config(
        site_include=f"{P}/nginx/sites/*.conf",
        pid_file=f"{P}/run/nginx.pid",
        error_log=f"{P}/log/nginx-error.log",
        temp_dir=f"{P}/nginx/tmp/",
        worker_processes="2",
        worker_connections=512,
    )
    lines = directives(text)
    assert not [line for line in lines if line.startswith("user")]
    assert "worker_processes 2;" in lines
    assert f"pid {P}/run/nginx.pid;" in lines
    assert f"error_log {P}/log/nginx-error.log warn;" in lines
    assert "worker_connections 512;" in lines
    assert f"include {P}/nginx/sites/*.conf;" in lines
    assert "access_log off;" in lines
    temp = [line for line in lines if "_temp_path" in line]
    assert len(temp) == 5
    assert all(line.split()[1].startswith(f"{P}/nginx/tmp/") for line in temp)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "--"}, "name"),
        ({"server_names": ()}, "server_names"),
        ({"server_names": "example.com"}, "server_names"),
        ({"server_names": ("exa mple.com",)}, "server_names"),
        ({"server_names": ("example.com;",)}, "server_names"),
        ({"upstreams": ()}, "upstreams"),
        ({"upstreams": (UpstreamServer("127.0.0.1:1", backup=True),)}, "upstreams"),
        (
            {"upstreams": (UpstreamServer("127.0.0.1:1"), UpstreamServer("127.0.0.1:1"))},
            "upstreams",
        ),
        ({"tls_certificate": "relative/cert.pem"}, "tls_certificate"),
        ({"tls_certificate_key": "/tls/key.pem;"}, "tls_certificate_key"),
        ({"access_log": "/log/access log"}, "access_log"),
        ({"error_log": "/log/$error"}, "error_log"),
        ({"acme_webroot": "/a/../etc"}, "acme_webroot"),
        ({"http_port": 0}, "http_port"),
        ({"https_port": 70000}, "https_port"),
        ({"https_port": 80}, "https_port"),
        ({"http_port": True}, "http_port"),
        ({"trusted_proxies": ("10.0.0.1/8",)}, "trusted_proxies"),
        ({"trusted_proxies": ("everyone",)}, "trusted_proxies"),
        ({"real_ip_header": "X_Forwarded_For"}, "real_ip_header"),
        ({"hsts_max_age": -1}, "hsts_max_age"),
        ({"hsts_preload": True, "hsts_include_subdomains": False}, "hsts_preload"),
        ({"hsts_preload": True, "hsts_max_age": 86400}, "hsts_preload"),
        ({"client_max_body_size": "1 m"}, "client_max_body_size"),
        ({"access_log_buffer": "0"}, "access_log_buffer"),
        ({"access_log_buffer": "64k flush=1h"}, "access_log_buffer"),
        ({"access_log_flush_ms": 0}, "access_log_flush_ms"),
        ({"access_log_flush_ms": 5000}, "access_log_flush_ms"),
        ({"upstream_keepalive": 0}, "upstream_keepalive"),
        ({"proxy_connect_timeout_s": 0}, "proxy_connect_timeout_s"),
        ({"proxy_read_timeout_s": 0}, "proxy_read_timeout_s"),
        ({"proxy_send_timeout_s": 0}, "proxy_send_timeout_s"),
        ({"next_upstream_tries": 0}, "next_upstream_tries"),
        ({"next_upstream_timeout_s": 0}, "next_upstream_timeout_s"),
        ({"http_redirect_code": 302}, "http_redirect_code"),
        ({"origin_verify_header": "X-Origin-Verify"}, "origin_verify_header"),
        ({"origin_verify_value": "v"}, "origin_verify_header"),
        (
            {"origin_verify_header": "X Origin", "origin_verify_value": "v"},
            "origin_verify_header",
        ),
        (
            {"origin_verify_header": "X_Origin", "origin_verify_value": "v"},
            "origin_verify_header",
        ),
        ({"origin_verify_header": "X-O", "origin_verify_value": "a$b"}, "origin_verify_value"),
        ({"origin_verify_header": "X-O", "origin_verify_value": "a b"}, "origin_verify_value"),
        ({"origin_verify_header": "X-O", "origin_verify_value": ""}, "origin_verify_value"),
        ({"origin_verify_header": "X-O", "origin_verify_value": "a\nb"}, "origin_verify_value"),
    ],
)
def test_site_validation_names_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        make_site(**overrides)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"address": "127.0.0.1"}, "address"),
        ({"address": "127.0.0.1:0"}, "address"),
        ({"address": "127.0.0.1:http"}, "address"),
        ({"address": "[::1]"}, "address"),
        ({"address": "[nope]:80"}, "address"),
        ({"address": "bad host:80"}, "address"),
        ({"address": "unix:relative.sock"}, "address"),
        ({"address": "127.0.0.1:80", "weight": 0}, "weight"),
        ({"address": "127.0.0.1:80", "max_fails": -1}, "max_fails"),
        ({"address": "127.0.0.1:80", "fail_timeout_s": 0}, "fail_timeout_s"),
    ],
)
def test_upstream_validation_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        UpstreamServer(**kwargs)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"site_include": "sites/*.conf"}, "site_include"),
        ({"pid_file": "/run/nginx pid"}, "pid_file"),
        ({"error_log": "/log/e;rr"}, "error_log"),
        ({"temp_dir": "tmp"}, "temp_dir"),
        ({"worker_processes": "0"}, "worker_processes"),
        ({"worker_processes": "many"}, "worker_processes"),
        ({"worker_connections": 1}, "worker_connections"),
    ],
)
def test_main_config_validation_names_the_field(overrides: dict[str, Any], field: str) -> None:
    kwargs: dict[str, Any] = {
        "site_include": "/etc/gin/site.conf",
        "pid_file": "/run/gin/nginx.pid",
        "error_log": "/var/log/gin/error.log",
        "temp_dir": "/var/lib/gin/tmp",
    }
    kwargs.update(overrides)
    with pytest.raises(ValueError, match=rf"^{field}:"):
        render_main_config(**kwargs)


def test_lists_are_accepted_and_stored_as_tuples() -> None:
    site = make_site(server_names=["a.example"], trusted_proxies=["10.0.0.0/8"])
    assert site.server_names == ("a.example",)
    assert site.trusted_proxies == ("10.0.0.0/8",)
    hash(site)


# ---------------------------------------------------------------- nginx -t


def write_config(directory: Path, *sites: NginxSite) -> Path:
    """Write nginx.conf including every site; return the nginx.conf path."""
    (directory / "tmp").mkdir(exist_ok=True)
    (directory / "sites").mkdir(exist_ok=True)
    for site in sites:
        (directory / "sites" / f"{site.ident}.conf").write_text(render_site(site))
    conf = directory / "nginx.conf"
    conf.write_text(
        render_main_config(
            site_include=str(directory / "sites" / "*.conf"),
            pid_file=str(directory / "nginx.pid"),
            error_log=str(directory / "error.log"),
            temp_dir=str(directory / "tmp"),
        )
    )
    return conf


def nginx_test(nginx: str, conf: Path) -> subprocess.CompletedProcess[str]:
    prefix = conf.parent
    return subprocess.run(
        [nginx, "-t", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def site_in(directory: Path, tls_pair: tuple[Path, Path], **overrides: Any) -> NginxSite:
    cert, key = tls_pair
    fields: dict[str, Any] = {
        "server_names": ("localhost",),
        "tls_certificate": str(cert),
        "tls_certificate_key": str(key),
        "access_log": str(directory / "access.log"),
        "error_log": str(directory / "site-error.log"),
    }
    fields.update(overrides)
    return make_site(**fields)


NGINX_T_CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "trusted-proxies-and-acme": {
        "trusted_proxies": ("10.0.0.0/8", "192.168.0.0/16", "fd00::/8"),
        "acme_webroot": "<dir>",
    },
    "origin-verify": {
        "origin_verify_header": "X-Origin-Verify",
        "origin_verify_value": "k\"e\\y'(){};#!%",
    },
    "origin-verify-exempt-paths": {
        "origin_verify_header": "X-Origin-Verify",
        "origin_verify_value": "k\"e\\y'(){};#!%",
        "origin_verify_exempt_paths": ("/readyz", "/healthz"),
        "trusted_proxies": ("130.176.0.0/18",),
    },
    "backup-weights-8443-no-ipv6": {
        "upstreams": (
            UpstreamServer("127.0.0.1:9080", weight=5),
            UpstreamServer("[::1]:9081", weight=2, max_fails=0),
            UpstreamServer("localhost:9082", backup=True),
            UpstreamServer("unix:/run/hello-gin.sock", backup=True),
        ),
        "http_port": 8080,
        "https_port": 8443,
        "ipv6": False,
        "hsts_preload": True,
        "http_redirect_code": 301,
    },
    "everything": {
        "name": "Full.Site",
        "server_names": ("localhost", "example.com", "*.example.org"),
        "trusted_proxies": ("127.0.0.1/32",),
        "real_ip_header": "X-Real-IP",
        "acme_webroot": "<dir>",
        "origin_verify_header": "CDN-Secret",
        "origin_verify_value": "abc",
        "client_max_body_size": "0",
        "hsts_include_subdomains": False,
    },
}


@pytest.mark.host
@pytest.mark.parametrize("case", sorted(NGINX_T_CASES))
def test_nginx_accepts_rendered_config(
    case: str, tmp_path: Path, tls_pair: tuple[Path, Path]
) -> None:
    nginx = require_tool("nginx")
    overrides = {k: str(tmp_path) if v == "<dir>" else v for k, v in NGINX_T_CASES[case].items()}
    conf = write_config(tmp_path, site_in(tmp_path, tls_pair, **overrides))
    result = nginx_test(nginx, conf)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@pytest.mark.host
def test_nginx_accepts_two_sites_side_by_side(tmp_path: Path, tls_pair: tuple[Path, Path]) -> None:
    nginx = require_tool("nginx")
    first = site_in(tmp_path, tls_pair, name="one")
    second = site_in(tmp_path, tls_pair, name="two", server_names=("two.example",))
    result = nginx_test(nginx, write_config(tmp_path, first, second))
    assert result.returncode == 0, result.stderr


@pytest.mark.host
@pytest.mark.parametrize("breakage", ["syntax", "missing-cert"])
def test_nginx_rejects_a_broken_site(
    breakage: str, tmp_path: Path, tls_pair: tuple[Path, Path]
) -> None:
    """The check above is meaningful only if nginx -t can fail on our files."""
    nginx = require_tool("nginx")
    if breakage == "syntax":
        site = site_in(tmp_path, tls_pair)
        conf = write_config(tmp_path, site)
        path = tmp_path / "sites" / f"{site.ident}.conf"
        path.write_text(path.read_text().replace("least_conn;", "least_conn bogus;"))
        expected = "least_conn"
    else:
        missing = tmp_path / "absent.pem"
        conf = write_config(tmp_path, site_in(tmp_path, tls_pair, tls_certificate=str(missing)))
        expected = "absent.pem"
    result = nginx_test(nginx, conf)
    assert result.returncode != 0
    assert expected in result.stderr


# ---------------------------------------------------------------- live proxy


class _Backend(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status: int) -> None:
        self.status = status
        self.hits: list[tuple[str, str]] = []
        super().__init__(("127.0.0.1", 0), _EchoHandler)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    """Replies with the request it saw as JSON (padded on /big so gzip applies)."""

    protocol_version = "HTTP/1.1"
    server: _Backend

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body_in = self.rfile.read(length) if length else b""
        self.server.hits.append((self.command, self.path))
        payload: dict[str, Any] = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body_in.decode(),
        }
        if self.path.startswith("/big"):
            payload["padding"] = "x" * 4096
        body = json.dumps(payload).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Frame-Options", "SAMEORIGIN")  # must be replaced by nginx
        self.end_headers()
        self.wfile.write(body)

    do_GET = _reply
    do_POST = _reply

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def backends() -> Iterator[dict[str, _Backend]]:
    servers = {"ok": _Backend(200), "ok2": _Backend(200), "draining": _Backend(503)}
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers.values()]
    for thread in threads:
        thread.start()
    yield servers
    for server in servers.values():
        server.shutdown()
        server.server_close()


def _dead_address() -> str:
    """A loopback port with nothing listening (connections are refused)."""
    return f"127.0.0.1:{free_port()}"


def _wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited: {proc.communicate()[1]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nginx did not listen on {port}")


class _Client:
    def __init__(self, http_port: int, https_port: int, cafile: Path) -> None:
        self.http_port = http_port
        self.https_port = https_port
        self.context = ssl.create_default_context(cafile=str(cafile))

    def request(
        self,
        method: str,
        path: str,
        *,
        host: str = "localhost",
        tls: bool = True,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[http.client.HTTPResponse, bytes, str | None]:
        conn: http.client.HTTPConnection
        if tls:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.https_port, context=self.context, timeout=10
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        try:
            conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
            response = conn.getresponse()
            data = response.read()
            sock = conn.sock
            version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
            return response, data, version
        finally:
            conn.close()


@pytest.mark.host
def test_live_proxy_behaviour(
    tmp_path: Path, tls_pair: tuple[Path, Path], backends: dict[str, _Backend]
) -> None:
    """Run nginx with two rendered sites in front of Python backends and check what clients see."""
    nginx = require_tool("nginx")
    http_port, https_port = free_port(), free_port()
    webroot = tmp_path / "acme"
    (webroot / ".well-known" / "acme-challenge").mkdir(parents=True)
    (webroot / ".well-known" / "acme-challenge" / "tok123").write_text("tok123.thumb")
    secret = "k\"e\\y'(){};#!%"
    common: dict[str, Any] = {"http_port": http_port, "https_port": https_port, "ipv6": False}
    main = site_in(
        tmp_path,
        tls_pair,
        name="main",
        # A stopped instance (refused) next to a healthy one.
        upstreams=(UpstreamServer(_dead_address()), UpstreamServer(backends["ok"].address)),
        acme_webroot=str(webroot),
        origin_verify_header="X-Origin-Verify",
        origin_verify_value=secret,
        **common,
    )
    # A draining instance that answers 503; max_fails=0 keeps the choice deterministic.
    # This site also trusts loopback as a proxy.
    drain = site_in(
        tmp_path,
        tls_pair,
        name="drain",
        server_names=("drain.test",),
        trusted_proxies=("127.0.0.0/8",),
        upstreams=(
            UpstreamServer(backends["draining"].address, max_fails=0),
            UpstreamServer(backends["ok2"].address, max_fails=0),
        ),
        **common,
    )
    conf = write_config(tmp_path, main, drain)
    # Tests may run as root; nginx's default worker user (nobody) could not read tmp_path.
    globals_ = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
    proc = subprocess.Popen(
        [
            nginx,
            "-p",
            str(tmp_path),
            "-c",
            str(conf),
            "-e",
            str(tmp_path / "error.log"),
            "-g",
            globals_,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_port(https_port, proc)
        _wait_for_port(http_port, proc)
        client = _Client(http_port, https_port, tls_pair[0])
        verify = {"X-Origin-Verify": secret}

        # Plain HTTP: redirect to HTTPS on the custom port, ACME served directly.
        response, _, _ = client.request("GET", "/a/b?c=1", tls=False)
        assert response.status == 308
        assert response.getheader("Location") == f"https://localhost:{https_port}/a/b?c=1"
        response, body, _ = client.request("GET", "/.well-known/acme-challenge/tok123", tls=False)
        assert (response.status, body) == (200, b"tok123.thumb")

        # Origin lock: the exact (awkward) value passes, anything else is 403.
        for headers in ({}, {"X-Origin-Verify": 'k"e\\y'}, {"X-Origin-Verify": secret + "x"}):
            response, _, _ = client.request("GET", "/", headers=headers)
            assert response.status == 403, headers
            assert response.getheader("Strict-Transport-Security")
        response, body, _ = client.request("GET", "/.well-known/acme-challenge/tok123")
        assert response.status == 200

        # Proxying: headers to the app, headers to the client, TLS version.
        response, body, version = client.request(
            "GET", "/hello?x=1", headers={**verify, "X-Forwarded-For": "6.6.6.6"}
        )
        assert response.status == 200
        assert version in ("TLSv1.2", "TLSv1.3")
        seen = json.loads(body)
        assert seen["path"] == "/hello?x=1"
        assert seen["headers"]["host"] == "localhost"
        assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"  # the forged value is gone
        assert seen["headers"]["x-real-ip"] == "127.0.0.1"
        assert seen["headers"]["x-forwarded-proto"] == "https"
        assert re.fullmatch(r"[0-9a-f]{32}", seen["headers"]["x-request-id"])
        assert "connection" not in seen["headers"]  # keepalive: no "Connection: close"
        assert response.getheader("Strict-Transport-Security") == (
            "max-age=63072000; includeSubDomains"
        )
        assert response.msg.get_all("X-Frame-Options") == ["DENY"]
        assert response.getheader("X-Content-Type-Options") == "nosniff"
        assert response.getheader("Referrer-Policy") == "no-referrer"
        assert response.getheader("Content-Security-Policy") == (
            "default-src 'none'; frame-ancestors 'none'"
        )
        assert response.getheader("Server") == "nginx"

        response, body, _ = client.request(
            "GET", "/big", headers={**verify, "Accept-Encoding": "gzip"}
        )
        assert response.getheader("Content-Encoding") == "gzip"
        assert json.loads(gzip.decompress(body))["path"] == "/big"

        # A refused connection is retried for every method: nothing reaches the client.
        for i in range(6):
            for method in ("GET", "POST"):
                response, _, _ = client.request(method, f"/r{i}", headers=verify, body=b"{}")
                assert response.status == 200, (method, i)
        response, _, _ = client.request("POST", "/big", headers=verify, body=b"x" * 2_000_000)
        assert response.status == 413  # client_max_body_size 1m

        # A 503 is retried for GET, but a POST that reached the app is never resent.
        get_statuses = [
            client.request("GET", f"/g{i}", host="drain.test")[0].status for i in range(6)
        ]
        assert get_statuses == [200] * 6
        post_statuses = [
            client.request("POST", f"/p{i}", host="drain.test", body=b"{}")[0].status
            for i in range(6)
        ]
        assert 503 in post_statuses and 200 in post_statuses
        assert len(backends["draining"].hits) == len(set(backends["draining"].hits))
        posts_to_ok = [p for m, p in backends["ok2"].hits if m == "POST"]
        posts_to_draining = [p for m, p in backends["draining"].hits if m == "POST"]
        assert not set(posts_to_ok) & set(posts_to_draining)

        # Behind a trusted proxy the client address comes from the header.
        response, body, _ = client.request(
            "GET", "/via-proxy", host="drain.test", headers={"X-Forwarded-For": "203.0.113.7"}
        )
        assert response.status == 200
        seen = json.loads(body)["headers"]
        assert seen["x-real-ip"] == "203.0.113.7"
        assert seen["x-forwarded-for"].split(", ")[-1] == "203.0.113.7"
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful: flushes the access log
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    records = [json.loads(line) for line in (tmp_path / "access.log").read_text().splitlines()]
    proxied = [r for r in records if r["uri"] == "/hello"]
    assert len(proxied) == 1
    record = proxied[0]
    assert record["status"] == 200
    assert record["method"] == "GET"
    assert record["ssl_protocol"] in ("TLSv1.2", "TLSv1.3")
    assert record["upstream_addr"].split(", ")[-1] == backends["ok"].address
    assert record["client"] == "127.0.0.1"
    assert re.fullmatch(r"[0-9a-f]{32}", record["request_id"])
    assert all("?" not in r["uri"] for r in records)
    (via_proxy,) = [r for r in records if r["uri"] == "/via-proxy"]
    assert (via_proxy["remote_addr"], via_proxy["client"]) == ("127.0.0.1", "203.0.113.7")
    assert via_proxy["forwarded_for"] == "203.0.113.7"
    # The retries are visible: a refused attempt, then the healthy instance, one 200.
    retried = [r for r in records if r["upstream_addr"].startswith(main.upstreams[0].address)]
    assert retried
    assert all(r["status"] == 200 and r["upstream_status"].endswith("200") for r in retried)
