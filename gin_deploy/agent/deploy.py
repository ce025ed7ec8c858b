"""deploy, destroy and status of one target, each under the target's lock.

deploy, in order: undo a release an interrupted deploy left (gin_deploy.agent.guard) ->
preflight (tools, free ports) -> install the agent and the release -> certificates ->
nginx config validated -> supervisor config -> the new release: rolling restart gated on
readiness, or beside the old one judged step by step (canary, blueGreen: agent.canary),
rolled back on failure -> nginx config installed and reloaded -> ACME
certificate (nginx now serves the challenge) -> state.json -> prune old releases.
Every step is idempotent: a deploy of what is already there changes nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any

from gin_deploy.agent.bundle import agent_bytes
from gin_deploy.agent.canary import release_beside, stray_candidates
from gin_deploy.agent.files import read_text, write_file
from gin_deploy.agent.guard import recover
from gin_deploy.agent.layout import (
    Layout,
    destroy_lock,
    ensure_state_dir,
    load_state,
    save_state,
    state_lock,
)
from gin_deploy.agent.output import HostError, log
from gin_deploy.agent.payload import AcmeTls, DeployPayload, Instance, TargetPayload
from gin_deploy.agent.preflight import check_ports, ensure_tools, nginx_ports
from gin_deploy.agent.processes import kill_processes, target_processes
from gin_deploy.agent.records import last_deploy, record_deploy, renewal
from gin_deploy.agent.releases import (
    current_release,
    install_release,
    keyed_release,
    prune_releases,
    switch_current,
)
from gin_deploy.agent.rollout import Target, rollout
from gin_deploy.agent.system_files import ensure_account
from gin_deploy.agent.tls import finish_acme, prepare_tls
from gin_deploy.agent.wire import WireError, load


def preflight(target: Target, payload: DeployPayload) -> None:
    ensure_tools(payload)
    ports: list[tuple[int, str] | tuple[int, str, str]] = []
    running = target.supervisor.running_instances() if target.supervisor.daemon_running() \
        else set()
    for inst in (*payload.instances, *payload.rollout.candidates):
        if inst.name not in running:
            ports.append((inst.port, f"instance {inst.name}"))
    if not target.nginx.running():
        ports += nginx_ports(payload.nginx)
    check_ports(ports)


def install_agent(layout: Layout) -> None:
    """Supervisord programs and certbot's hook run <stateDir>/bin/hostctl.py."""
    if write_file(layout.agent, agent_bytes(), 0o755):
        log(f"installed agent at {layout.agent}")


def deploy(payload: DeployPayload) -> dict[str, Any]:
    """One deploy, its outcome recorded for `status` (<stateDir>/last-deploy.json)."""
    try:
        result = _deploy(payload)
    except HostError as exc:
        record_deploy(Layout(payload.state_dir), "failed", payload.release.id, str(exc))
        raise
    record_deploy(Layout(payload.state_dir), "ok", str(result["release"]))
    return result


def _deploy(payload: DeployPayload) -> dict[str, Any]:
    layout = Layout(payload.state_dir)
    ensure_state_dir(layout)
    with state_lock(layout):
        # A release an earlier deploy left half done (its guard could not undo it).
        recover(layout)
        payload = keyed_release(payload, layout)
        target = Target.create(payload)
        rel, tls, nginx = payload.release, payload.tls, payload.nginx
        main = nginx.main or ""  # system mode: the host's nginx.conf
        preflight(target, payload)
        install_agent(layout)
        account = payload.supervisord.user if payload.supervisord else None
        env_gid = ensure_account(account) if account and payload.mode == "system" else None
        content_changed = install_release(payload, layout, env_gid)
        prior = load_state(layout)
        prev = current_release(layout)
        tls_changed, acme_pending = prepare_tls(layout, payload.app, tls)
        # Validate the nginx configuration before touching any instance.
        target.nginx.check(nginx.site, main)
        if prev is None:
            switch_current(layout, rel.id)  # instances started by the supervisor need it
        unit_changed = target.supervisor.apply()
        force = unit_changed or (content_changed and prev == rel.id)
        steps: list[dict[str, Any]] = []
        if payload.rollout.candidates:
            stray_candidates(target, payload.rollout.candidates)
        if payload.rollout.strategy != "rolling" and prev is not None and prev != rel.id:
            steps = release_beside(target, payload, rel.id, prev,
                                   (nginx.conf_dir, target.supervisor.conf_dir))
            restarted = True
        else:
            restarted = rollout(target, rel.id, prev, force)
        nginx_changed = target.nginx.apply(nginx.site, main)
        if tls_changed and not nginx_changed:
            target.nginx.reload()
        if acme_pending and isinstance(tls, AcmeTls):
            finish_acme(layout, tls)
            target.nginx.reload()
        previous = prev if prev != rel.id else prior.get("previous")
        state = load_state(layout)  # finish_acme may have added to it
        state.update({
            "app": payload.app, "mode": payload.mode, "supervisor": payload.supervisor,
            "current": rel.id, "previous": previous, "readyPath": payload.ready_path,
            "instances": [{"name": i.name, "port": i.port} for i in payload.instances],
            "candidates": [{"name": i.name, "port": i.port}
                           for i in payload.rollout.candidates],
            "tlsMode": tls.mode,
            "nginxConfDir": nginx.conf_dir,
            # destroy and status find the system files where this deploy put them
            "supervisorConfDir": target.supervisor.conf_dir,
            "systemName": payload.name,
        })
        save_state(layout, state)
        prune_releases(layout, payload.keep_releases, (rel.id, previous))
        changed = restarted or nginx_changed or tls_changed or content_changed
        return {
            "release": rel.id,
            "previous": previous,
            "changed": bool(changed),
            "instances": [{"name": i.name, "port": i.port, "ready": target.ready(i)}
                          for i in payload.instances],
            "caCert": layout.ca_crt if os.path.exists(layout.ca_crt) else None,
            "strategy": payload.rollout.strategy if steps else "rolling",
            "steps": steps,
        }


def destroy(payload: TargetPayload) -> dict[str, Any]:
    target = Target.from_state(payload)
    layout = target.layout
    exists = os.path.isdir(layout.state_dir)
    with destroy_lock(layout):
        state = load_state(layout)
        instances = list(payload.instances)
        for old in [*(state.get("instances") or []), *(state.get("candidates") or [])]:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                inst = Instance(str(old["name"]), int(old["port"]))
                if all(i.port != inst.port for i in instances):
                    instances.append(inst)
        target.supervisor.destroy(instances)
        target.nginx.remove()
        if exists:
            kill_processes(target_processes(layout))
            shutil.rmtree(layout.state_dir)
            log(f"removed {layout.state_dir}")
    return {"destroyed": True, "stateDir": layout.state_dir, "existed": exists}


def status_from_state(state_dir: str) -> TargetPayload:
    """The target the last deploy left in `state_dir`."""
    layout = Layout(os.path.normpath(state_dir))
    state = load_state(layout)
    if not state:
        raise HostError(f"no state in {layout.state_file}; deploy first or pass a payload")
    data = {"app": state.get("app"), "stateDir": layout.state_dir, "mode": state.get("mode"),
            "supervisor": state.get("supervisor"), "instances": state.get("instances")}
    try:
        return load(TargetPayload, data)
    except WireError as exc:
        raise HostError(f"{layout.state_file} is damaged: {exc}") from None


def status(payload: TargetPayload) -> dict[str, Any]:
    """What runs now, and what the last deploy and certificate renewal did."""
    target = Target.from_state(payload)
    layout = target.layout
    instances = [{"name": i.name, "port": i.port, "ready": target.ready(i)}
                 for i in payload.instances]
    state = load_state(layout)
    ca = read_text(layout.ca_crt) if state.get("tlsMode") == "self-signed" else None
    return {
        "current": current_release(layout),
        "instances": instances,
        "ready": sum(1 for i in instances if i["ready"]),
        "wanted": len(instances),
        "nginxRunning": target.nginx.running(),
        "tlsMode": state.get("tlsMode"),
        "lastDeploy": last_deploy(layout),
        "renewal": renewal(layout),
        # Self-signed targets: the CA that the served certificate chains to, so a status
        # taken from elsewhere can verify it.
        "caCert": ca,
    }
