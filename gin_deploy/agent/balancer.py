"""A fleet's balancer, on the balancer host: its TLS (ACME: renewed by the single host's
program or timer), its nginx site, and which hosts are in the site's upstream at each
step of a release.

The program renders the whole site (gin_deploy/render/balancer.py); the agent only sets
the `server` lines of its upstream from the payload's members, so draining a host (`down`)
or joining one is a validated (`nginx -t`) config change and a graceful reload: requests
in flight on the old workers finish, new ones go to the hosts that are up.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from typing import Any

from gin_deploy.agent.deploy import install_agent
from gin_deploy.agent.files import read_text
from gin_deploy.agent.fleet_payload import (
    BalancerPayload,
    BalancerRenewal,
    BalancerTarget,
    Member,
)
from gin_deploy.agent.layout import (
    Layout,
    destroy_lock,
    ensure_state_dir,
    load_state,
    save_state,
    state_lock,
)
from gin_deploy.agent.nginx import Nginx, make_nginx
from gin_deploy.agent.output import HostError, log
from gin_deploy.agent.payload import (
    NGINX_CONF_DIR,
    SUPERVISOR_CONF_DIR,
    SYSTEMD_UNIT_DIR,
    AcmeTls,
    TargetPayload,
)
from gin_deploy.agent.processes import kill_processes, target_processes
from gin_deploy.agent.records import renewal
from gin_deploy.agent.supervisors import (
    Supervisor,
    Systemd,
    SystemSupervisord,
    UserSupervisord,
)
from gin_deploy.agent.tls import finish_acme, prepare_tls

# A host taken out of rotation for good (a failed first deploy) still needs a line: nginx
# refuses an upstream without servers, so a balancer always has at least one member.
_SERVER = re.compile(r"^[ \t]*server[ \t][^;\n]*;[ \t]*\n", re.M)


def member_line(m: Member, max_fails: int, fail_timeout_s: int) -> str:
    flags = "".join((" backup" if m.backup else "", " down" if m.down else ""))
    return (f"    server {m.address} weight={m.weight} max_fails={max_fails} "
            f"fail_timeout={fail_timeout_s}s{flags};  # {m.name}\n")


def _passive_check(block: str) -> tuple[int, int]:
    """The rendered servers' max_fails and fail_timeout (the program chose them)."""
    fails = re.search(r"\bmax_fails=(\d+)", block)
    timeout = re.search(r"\bfail_timeout=(\d+)s", block)
    return (int(fails.group(1)) if fails else 2, int(timeout.group(1)) if timeout else 5)


def with_members(site: str, upstream: str, members: Sequence[Member]) -> str:
    """`site` with the servers of upstream `upstream` replaced by `members`."""
    if not members:
        raise HostError("a balancer needs at least one member in its upstream")
    pattern = re.compile(r"(\bupstream\s+" + re.escape(upstream) + r"\s*\{)(.*?)(\n\})", re.S)
    found = pattern.search(site)
    if found is None:
        raise HostError(f"the balancer's nginx site has no upstream {upstream!r}")
    body = found.group(2)
    servers = list(_SERVER.finditer(body))
    if not servers:
        raise HostError(f"upstream {upstream!r} of the balancer's site has no server lines")
    fails, timeout = _passive_check(body)
    lines = "".join(member_line(m, fails, timeout) for m in members)
    first, last = servers[0].start(), servers[-1].end()
    new_body = body[:first] + lines + _SERVER.sub("", body[first:last]) + body[last:]
    return site[:found.start(2)] + new_body + site[found.end(2):]


def _nginx(target: BalancerTarget) -> Nginx:
    return make_nginx(Layout(target.state_dir), target.mode, target.app, target.conf_dir,
                      target.name)


def _renewer(layout: Layout, target: BalancerTarget, kind: str, conf_dir: str,
             renew: BalancerRenewal | None = None) -> Supervisor:
    """What runs the balancer's renewal: the single host's supervisord (its own in user
    mode, the host's in system mode) or systemd, with no instance of its own."""
    none = TargetPayload(app=target.app, state_dir=layout.state_dir, mode=target.mode,
                         supervisor="systemd" if kind == "systemd" else "supervisord",
                         instances=())
    files = renew.supervisord if renew else None
    if kind == "systemd":
        return Systemd(none, layout, conf_dir, None, target.name)
    if target.mode == "user":
        return UserSupervisord(none, layout, conf_dir, files)
    return SystemSupervisord(none, layout, conf_dir, files, target.name)


def _apply_renewal(layout: Layout, target: BalancerTarget, renew: BalancerRenewal | None,
                   state: dict[str, Any]) -> dict[str, Any]:
    """Install (or remove) what renews the certificate; returns the state keys that let
    destroy find it again."""
    before = state.get("renewal")
    if renew is None:
        if isinstance(before, dict):
            _remove_renewal(layout, target, before)
        return {"renewal": None}
    if renew.supervisord is not None:
        kind, conf_dir = "supervisord", renew.supervisord.conf_dir
    else:
        kind, conf_dir = "systemd", renew.unit_dir
    if isinstance(before, dict) and before.get("supervisor") != kind:
        _remove_renewal(layout, target, before)
    sup = _renewer(layout, target, kind, conf_dir, renew)
    if isinstance(sup, Systemd):
        sup.apply_renew_timer(renew.renew_service, renew.renew_timer)
    else:
        sup.apply()
    return {"renewal": {"supervisor": kind, "confDir": conf_dir}}


def _remove_renewal(layout: Layout, target: BalancerTarget, recorded: dict[str, Any]) -> None:
    kind = str(recorded.get("supervisor") or "supervisord")
    default = SYSTEMD_UNIT_DIR if kind == "systemd" else SUPERVISOR_CONF_DIR
    sup = _renewer(layout, target, kind, str(recorded.get("confDir") or default))
    if isinstance(sup, Systemd):
        sup.remove_renew_timer()
        sup.systemctl("daemon-reload", check=False)
    else:
        sup.destroy(())


def balance(payload: BalancerPayload) -> dict[str, Any]:
    """Install (or update) the balancer with the payload's members; reload nginx."""
    layout = Layout(payload.target.state_dir)
    ensure_state_dir(layout)
    with state_lock(layout):
        install_agent(layout)
        tls = payload.tls
        tls_changed, acme_pending = prepare_tls(layout, payload.target.app, tls)
        site = with_members(payload.nginx.site, payload.upstream, payload.members)
        nginx = _nginx(payload.target)
        changed = nginx.apply(site, payload.nginx.main or "")
        if tls_changed and not changed:
            nginx.reload()
        if acme_pending and isinstance(tls, AcmeTls):
            finish_acme(layout, tls)
            nginx.reload()
        state = load_state(layout)
        # Once the certificate is there, renewed like a single host's (`hostctl.py renew`).
        state.update(_apply_renewal(layout, payload.target, payload.renewal, state))
        state.update({
            "role": "balancer", "app": payload.target.app, "mode": payload.target.mode,
            "systemName": payload.target.name, "nginxConfDir": payload.target.conf_dir,
            "tlsMode": tls.mode,
            "members": [{"name": m.name, "address": m.address, "down": m.down}
                        for m in payload.members],
        })
        save_state(layout, state)
    up = [m.name for m in payload.members if not m.down]
    log(f"balancer: {', '.join(up) or 'no host'} in rotation"
        + (f"; drained: {', '.join(m.name for m in payload.members if m.down)}"
           if len(up) < len(payload.members) else ""))
    return {"members": state["members"], "changed": bool(changed or tls_changed)}


def members(state_dir: str) -> dict[str, Any]:
    """The members the balancer's last step left in rotation (`joined`) and drained, and
    what `status` asks of it (nginx, TLS; the CA of a self-signed certificate)."""
    layout = Layout(os.path.normpath(state_dir))
    state = load_state(layout)
    listed = state.get("members") or []
    self_signed = state.get("tlsMode") == "self-signed"
    running = make_nginx(layout, state.get("mode", "user"), str(state.get("app", "")),
                         state.get("nginxConfDir") or NGINX_CONF_DIR,
                         state.get("systemName")).running() if state else False
    return {"joined": [m["name"] for m in listed if not m.get("down")],
            "drained": [m["name"] for m in listed if m.get("down")],
            "nginxRunning": running, "tlsMode": state.get("tlsMode"),
            "caCert": read_text(layout.ca_crt) if self_signed else None,
            "renewal": renewal(layout)}


def destroy_balancer(target: BalancerTarget) -> dict[str, Any]:
    layout = Layout(os.path.normpath(target.state_dir))
    exists = os.path.isdir(layout.state_dir)
    with destroy_lock(layout):
        recorded = load_state(layout).get("renewal") if exists else None
        if isinstance(recorded, dict):
            _remove_renewal(layout, target, recorded)
        _nginx(target).remove()
        if exists:
            kill_processes(target_processes(layout))
            shutil.rmtree(layout.state_dir)
            log(f"removed {layout.state_dir}")
    return {"destroyed": True, "stateDir": layout.state_dir, "existed": exists}
