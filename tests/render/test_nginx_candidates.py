"""A site with a release's candidates: the pools, the per-request draw, and that moving the
share needs no reload - checked by nginx itself, live in front of two backends."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from gin_deploy.agent.traffic import set_share, share_of
from gin_deploy.render.nginx import UpstreamServer, render_site
from tests.render.conftest import free_port, require_tool
from tests.render.test_nginx_render import (
    _Backend,
    _Client,
    _wait_for_port,
    make_site,
    nginx_test,
    site_in,
    write_config,
)

STABLE = (UpstreamServer("127.0.0.1:9080"), UpstreamServer("127.0.0.1:9081"))
CANDIDATES = (UpstreamServer("127.0.0.1:9082"), UpstreamServer("127.0.0.1:9083"))


def test_each_pool_falls_back_on_the_other_and_requests_draw_their_pool() -> None:
    text = render_site(make_site(upstreams=STABLE, candidate_upstreams=CANDIDATES,
                                 candidate_share_dir="/srv/x/nginx/candidate-share"))
    stable = text.split("upstream hello_gin_backend {")[1].split("}")[0]
    assert "server 127.0.0.1:9080 weight=1 max_fails=2 fail_timeout=5s;" in stable
    assert "server 127.0.0.1:9082 max_fails=2 fail_timeout=5s backup;" in stable
    candidate = text.split("upstream hello_gin_candidate {")[1].split("}")[0]
    assert "least_conn;" in candidate
    assert "server 127.0.0.1:9083 weight=1 max_fails=2 fail_timeout=5s;" in candidate
    assert "server 127.0.0.1:9081 max_fails=2 fail_timeout=5s backup;" in candidate
    split = text.split('split_clients "${request_id}" $hello_gin_bucket {')[1].split("}")[0]
    assert [ln.strip() for ln in split.strip().splitlines()] == [
        *(f"1% {i};" for i in range(1, 100)), "* 100;"]
    assert "if (-f /srv/x/nginx/candidate-share/$hello_gin_bucket) {" in text
    assert "proxy_pass http://$hello_gin_pool;" in text
    # Without candidates the site is as before.
    plain = render_site(make_site(upstreams=STABLE))
    assert "split_clients" not in plain and "proxy_pass http://hello_gin_backend;" in plain


@pytest.mark.parametrize(("overrides", "message"), [
    ({"candidate_upstreams": CANDIDATES}, "candidate_share_dir: set exactly when"),
    ({"candidate_share_dir": "/srv/x"}, "candidate_share_dir: set exactly when"),
    ({"candidate_upstreams": (STABLE[0],), "candidate_share_dir": "/srv/x"},
     "candidate_upstreams: addresses must be unique and differ"),
    ({"candidate_upstreams": (UpstreamServer("127.0.0.1:9", backup=True),),
      "candidate_share_dir": "/srv/x"}, "candidate_upstreams: a candidate cannot be a backup"),
])
def test_candidate_fields_are_checked_by_name(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_site(upstreams=STABLE, **overrides)


@pytest.mark.host
def test_nginx_accepts_a_site_with_candidates_and_the_origin_lock(
        tmp_path: Path, tls_pair: tuple[Path, Path]) -> None:
    nginx = require_tool("nginx")
    site = site_in(tmp_path, tls_pair, upstreams=STABLE, candidate_upstreams=CANDIDATES,
                   candidate_share_dir=str(tmp_path / "share"),
                   origin_verify_header="X-Origin-Verify", origin_verify_value="abc",
                   origin_verify_exempt_paths=("/readyz",))
    result = nginx_test(nginx, write_config(tmp_path, site))
    assert result.returncode == 0, result.stderr


@pytest.mark.host
def test_the_share_moves_without_a_reload_and_a_stopped_pool_falls_back(
        tmp_path: Path, tls_pair: tuple[Path, Path]) -> None:
    nginx = require_tool("nginx")
    old, new = _Backend(200), _Backend(200)
    for server in (old, new):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    http_port, https_port = free_port(), free_port()
    share = tmp_path / "share"
    site = site_in(tmp_path, tls_pair, upstreams=(UpstreamServer(old.address, max_fails=0),),
                   candidate_upstreams=(UpstreamServer(new.address, max_fails=0),),
                   candidate_share_dir=str(share), http_port=http_port,
                   https_port=https_port, ipv6=False)
    # Its candidates stopped (nothing listens) while they have every request.
    stopped = tmp_path / "stopped-share"
    set_share(str(stopped), 100)
    dead = site_in(tmp_path, tls_pair, name="dead", server_names=("dead.test",),
                   upstreams=(UpstreamServer(old.address),),
                   candidate_upstreams=(UpstreamServer(f"127.0.0.1:{free_port()}"),),
                   candidate_share_dir=str(stopped), http_port=http_port,
                   https_port=https_port, ipv6=False)
    conf = write_config(tmp_path, site, dead)
    globals_ = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
    proc = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(conf), "-e",
                             str(tmp_path / "error.log"), "-g", globals_],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_port(https_port, proc)
        client = _Client(http_port, https_port, tls_pair[0])

        def candidates_got(n: int) -> int:
            before = len(new.hits)
            for _ in range(n):
                response, _, _ = client.request("GET", "/x")
                assert response.status == 200
            return len(new.hits) - before

        assert candidates_got(100) == 0  # rendered at 0%
        set_share(str(share), 30)
        assert share_of(str(share)) == 30
        got = candidates_got(400)
        assert 80 <= got <= 160, got  # 30% of 400 = 120, a binomial draw per request
        set_share(str(share), 100)
        assert candidates_got(50) == 50
        # A candidates' pool stopped while it has every request: the instances answer.
        before = len(old.hits)
        for _ in range(20):
            response, _, _ = client.request("GET", "/x", host="dead.test")
            assert response.status == 200
        assert len(old.hits) - before == 20
        set_share(str(share), 0)
        assert share_of(str(share)) == 0 and os.listdir(share) == []
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for server in (old, new):
            server.shutdown()
            server.server_close()
