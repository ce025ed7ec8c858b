"""A fleet's nginx checked by nginx itself: the balancer's site with the upstream servers
a release step sets (weights, backup, a drained host), and a host's private site."""

from __future__ import annotations

from pathlib import Path

import pytest

from gin_deploy.agent.balancer import with_members
from gin_deploy.agent.fleet_payload import Member
from gin_deploy.render.balancer import (
    MemberSite,
    member_upstreams,
    render_member_site,
)
from gin_deploy.render.nginx import UpstreamServer, render_main_config, render_site
from tests.render.conftest import require_tool
from tests.render.test_nginx_render import nginx_test, site_in

HOSTS = (("10.0.0.11", 3, False), ("10.0.0.12", 1, False), ("fd00::13", 1, True))


def write(directory: Path, *sites: str) -> Path:
    (directory / "tmp").mkdir(exist_ok=True)
    (directory / "sites").mkdir(exist_ok=True)
    for i, text in enumerate(sites):
        (directory / "sites" / f"{i}.conf").write_text(text)
    conf = directory / "nginx.conf"
    conf.write_text(render_main_config(
        site_include=str(directory / "sites" / "*.conf"), pid_file=str(directory / "pid"),
        error_log=str(directory / "error.log"), temp_dir=str(directory / "tmp")))
    return conf


def member(directory: Path) -> str:
    return render_member_site(MemberSite(
        name="hello-gin", address="127.0.0.2", port=8081, balancers=("127.0.0.1", "fd00::1"),
        upstreams=(UpstreamServer("127.0.0.1:9080"), UpstreamServer("127.0.0.1:9081")),
        access_log=str(directory / "access.log"), error_log=str(directory / "site.log")))


def test_the_balancers_upstream_lists_the_hosts_with_their_passive_checks() -> None:
    servers = member_upstreams(HOSTS, 8081)
    assert [(s.address, s.weight, s.backup, s.max_fails, s.fail_timeout_s) for s in servers] \
        == [("10.0.0.11:8081", 3, False, 2, 5), ("10.0.0.12:8081", 1, False, 2, 5),
            ("[fd00::13]:8081", 1, True, 2, 5)]


def test_a_step_replaces_only_the_upstream_servers(tmp_path: Path,
                                                   tls_pair: tuple[Path, Path]) -> None:
    site = render_site(site_in(tmp_path, tls_pair, name="lb",
                               upstreams=member_upstreams(HOSTS, 8081)))
    step = with_members(site, "lb_backend", [
        Member("app1", "10.0.0.11:8081", 3), Member("app2", "10.0.0.12:8081", down=True)])
    upstream = step.split("upstream lb_backend {")[1].split("}")[0]
    assert "server 10.0.0.12:8081 weight=1 max_fails=2 fail_timeout=5s down;  # app2" \
        in upstream
    assert "fd00::13" not in upstream and "least_conn;" in upstream
    assert "keepalive 32;" in upstream
    # Everything outside the upstream is untouched.
    assert step.replace(upstream, "") == site.replace(
        site.split("upstream lb_backend {")[1].split("}")[0], "")


def test_a_host_refuses_all_but_the_balancers_by_their_own_address(tmp_path: Path) -> None:
    text = member(tmp_path)
    assert "listen 127.0.0.2:8081;" in text
    assert "geo $realip_remote_addr $hello_gin_from_balancer {" in text
    assert "    127.0.0.1 1;\n    fd00::1 1;\n" in text
    assert "set_real_ip_from 127.0.0.1;\n    set_real_ip_from fd00::1;" in text
    with pytest.raises(ValueError, match="balancers"):
        MemberSite(name="x", address="127.0.0.2", port=8081, balancers=("lb.internal",),
                   upstreams=(UpstreamServer("127.0.0.1:9080"),),
                   access_log="/var/log/a.log", error_log="/var/log/e.log")


@pytest.mark.host
def test_nginx_accepts_the_balancer_at_every_step_and_the_hosts_site(
        tmp_path: Path, tls_pair: tuple[Path, Path]) -> None:
    nginx = require_tool("nginx")
    site = render_site(site_in(tmp_path, tls_pair, name="lb",
                               upstreams=member_upstreams(HOSTS, 8081)))
    steps = [
        [Member("app1", "10.0.0.11:8081", 3)],
        [Member("app1", "10.0.0.11:8081", 3, down=True), Member("app2", "10.0.0.12:8081"),
         Member("spare", "[fd00::13]:8081", backup=True)],
    ]
    for members in steps:
        result = nginx_test(nginx, write(tmp_path, with_members(site, "lb_backend", members),
                                         member(tmp_path)))
        assert result.returncode == 0, result.stderr
