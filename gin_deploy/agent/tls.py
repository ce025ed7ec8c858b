"""The certificate nginx serves: self-signed from the target's CA, or ACME via certbot.

nginx always reads the stable paths tls/server.crt and tls/server.key; the agent points
them (relative symlinks) at the self-signed leaf or at certbot's live files. An ACME
target serves a temporary self-signed certificate until certbot has its first one.
certbot's deploy hook is ``hostctl.py reload-nginx``; `renew` and `renew-loop` renew.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import os
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

from gin_deploy.agent.certs import CertTool, cert_tool, is_ip, utcnow
from gin_deploy.agent.files import atomic_symlink, read_text, sha256_file, write_file
from gin_deploy.agent.layout import Layout, load_state, save_state, state_lock
from gin_deploy.agent.output import HostError, log
from gin_deploy.agent.payload import AcmeTls, SelfSignedTls, Tls
from gin_deploy.agent.processes import run_cmd, tool
from gin_deploy.agent.records import cert_days_left, record_renewal

LEAF_DAYS = 365
RENEW_BEFORE_DAYS = 30
# A renewal that leaves fewer days than this failed, whatever certbot said (certbot renews
# ACME certificates 30 days ahead, so a healthy renewal never comes near it).
RENEW_MIN_DAYS = 14


def wanted_sans(domains: Sequence[str]) -> frozenset[str]:
    sans = {("IP:" if is_ip(d) else "DNS:") + d.lower().rstrip(".") for d in domains}
    sans.add("IP:127.0.0.1")
    return frozenset(sans)


def fingerprint(path: str) -> str:
    return sha256_file(path) if os.path.exists(path) else ""



def ensure_self_signed(layout: Layout, app: str, domains: Sequence[str],
                       certs: CertTool | None = None) -> tuple[str, str, bool]:
    """Make sure the CA and a current leaf exist; return (cert, key, reissued)."""
    certs = certs or cert_tool()
    os.makedirs(layout.self_signed, exist_ok=True)
    if not (os.path.exists(layout.ca_crt) and os.path.exists(layout.ca_key)):
        log("creating the self-signed CA")
        certs.create_ca(layout.ca_crt, layout.ca_key,
                        f"gin-deploy {app} CA {base64.b32encode(os.urandom(5)).decode()}")
    cert = os.path.join(layout.self_signed, "server.crt")
    key = os.path.join(layout.self_signed, "server.key")
    meta_path = os.path.join(layout.self_signed, "issued-by.sha256")
    sans = wanted_sans(domains)
    reason = ""
    if not (os.path.exists(cert) and os.path.exists(key)):
        reason = "no leaf certificate yet"
    elif (read_text(meta_path) or "").strip() != fingerprint(layout.ca_crt):
        reason = "the CA changed"
    else:
        info = certs.inspect(cert)
        if info.sans != sans:
            reason = "the domain set changed"
        elif info.not_after - utcnow() < datetime.timedelta(days=RENEW_BEFORE_DAYS):
            reason = f"it expires within {RENEW_BEFORE_DAYS} days"
    if reason:
        log(f"issuing a self-signed certificate for {', '.join(sorted(sans))} ({reason})")
        certs.create_leaf(layout.ca_crt, layout.ca_key, cert, key, sans, LEAF_DAYS)
        write_file(meta_path, fingerprint(layout.ca_crt) + "\n")
    return cert, key, bool(reason)


def point_tls(layout: Layout, cert: str, key: str) -> bool:
    """Point the stable server.crt/server.key at cert/key; True when that changed something."""
    changed = False
    for link, target in ((layout.server_crt, cert), (layout.server_key, key)):
        rel = os.path.relpath(target, os.path.dirname(link))
        try:
            current = os.readlink(link)
        except OSError:
            current = None
        if current != rel:
            atomic_symlink(rel, link)
            changed = True
    return changed


def acme_live(layout: Layout, domains: Sequence[str]) -> tuple[str, str]:
    live = os.path.join(layout.acme_dir("config"), "live", domains[0])
    return os.path.join(live, "fullchain.pem"), os.path.join(live, "privkey.pem")


def certbot_common(layout: Layout) -> list[str]:
    return [
        "--config-dir", layout.acme_dir("config"),
        "--work-dir", layout.acme_dir("work"),
        "--logs-dir", layout.acme_dir("logs"),
        "--non-interactive",
        "--deploy-hook", deploy_hook(layout),
    ]


def deploy_hook(layout: Layout) -> str:
    """certbot stores the hook and runs it through a shell: every word is quoted."""
    return shlex.join([sys.executable, layout.agent, "reload-nginx", "--state",
                       layout.state_dir])


def certbot_env(layout: Layout) -> dict[str, str]:
    env = dict(os.environ)
    if os.path.exists(layout.acme_ca_bundle):
        env["REQUESTS_CA_BUNDLE"] = layout.acme_ca_bundle
    return env


def acme_obtain(layout: Layout, tls: AcmeTls) -> None:
    certbot = tool("certbot")
    for kind in ("config", "work", "logs"):
        os.makedirs(layout.acme_dir(kind), mode=0o700, exist_ok=True)
    if tls.challenge == "dns-01-route53":
        plugins = run_cmd([certbot, "plugins", "--non-interactive"], "certbot plugins",
                          timeout=120)
        if "dns-route53" not in plugins.stdout:
            raise HostError("tls.challenge dns-01-route53 needs certbot's Route 53 plugin on "
                            "the host: install python3-certbot-dns-route53 (and give the "
                            "host AWS credentials for the zone)")
        args = [certbot, "certonly", "--dns-route53"]
    else:
        args = [certbot, "certonly", "--webroot", "-w", tls.webroot]
    for d in tls.domains:
        args += ["-d", d]
    args += ["--cert-name", tls.domains[0], "--server", tls.server, "--email", tls.email,
             "--agree-tos", "--keep-until-expiring", "--expand", *certbot_common(layout)]
    log(f"requesting an ACME certificate for {', '.join(tls.domains)} from {tls.server}")
    run_cmd(args, "certbot certonly", env=certbot_env(layout), timeout=600)


def renew(state_dir: str, force: bool = False,
          min_days: float = RENEW_MIN_DAYS) -> dict[str, Any]:
    """certbot renew, recorded in <stateDir>/renewal.json and logs/renew.log. Fails (and
    records the failure) when certbot fails or the served certificate is left with fewer
    than `min_days` days: a renewal that does not renew must not look like one."""
    layout = Layout(os.path.normpath(state_dir))
    if not os.path.isdir(layout.acme_dir("config")):
        log("no ACME certificates here; nothing to renew")
        return {"renewed": False}
    # certbot sleeps up to 8 minutes before a non-interactive renew (meant for cron jobs all
    # firing at the same minute); we hold the state lock meanwhile, which would block deploys.
    # renew-loop's schedule starts at the deploy, so hosts are spread out anyway.
    args = [tool("certbot"), "renew", *certbot_common(layout), "--no-random-sleep-on-renew"]
    if force:
        args.append("--force-renewal")
    started = utcnow()
    cert: tuple[float, datetime.datetime] | None = None
    try:
        with state_lock(layout):
            run_cmd(args, "certbot renew", env=certbot_env(layout), timeout=900)
        cert = cert_days_left(layout.server_crt)
        if cert[0] < min_days:
            raise HostError(
                f"after renewal the served certificate {layout.server_crt} expires in "
                f"{cert[0]:.1f} days (< {min_days:g}): certbot did not renew it; see "
                f"{layout.acme_dir('logs')}/letsencrypt.log")
    except HostError as exc:
        with contextlib.suppress(HostError):
            cert = cert or cert_days_left(layout.server_crt)
        record_renewal(layout, started, str(exc), cert)
        raise HostError(f"certificate renewal failed: {exc}") from None
    record = record_renewal(layout, started, None, cert)
    log(f"renewed; the certificate is valid for {cert[0]:.1f} more days")
    return {"renewed": True, "daysLeft": record.get("daysLeft"),
            "notAfter": record.get("notAfter")}


def renew_loop(state_dir: str, interval: float, min_days: float = RENEW_MIN_DAYS) -> None:
    log(f"renewing certificates every {interval:g}s")
    while True:
        time.sleep(interval)
        try:
            renew(state_dir, min_days=min_days)
        except HostError as exc:
            log(f"error: {exc} (will retry in {interval:g}s)")



def prepare_tls(layout: Layout, app: str, tls: Tls) -> tuple[bool, bool]:
    """Make the stable cert paths valid. Returns (changed, acme_pending)."""
    if isinstance(tls, SelfSignedTls):
        cert, key, reissued = ensure_self_signed(layout, app, tls.domains)
        return point_tls(layout, cert, key) or reissued, False
    os.makedirs(layout.acme, mode=0o755, exist_ok=True)
    if tls.ca_bundle:
        write_file(layout.acme_ca_bundle, tls.ca_bundle)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(layout.acme_ca_bundle)
    os.makedirs(os.path.join(tls.webroot, ".well-known", "acme-challenge"), mode=0o755,
                exist_ok=True)
    fullchain, privkey = acme_live(layout, tls.domains)
    state = load_state(layout)
    have = os.path.exists(fullchain) and os.path.exists(privkey)
    same_domains = state.get("acmeDomains") == list(tls.domains)
    if have:
        changed = point_tls(layout, fullchain, privkey)
        return changed, not same_domains
    # Until the ACME certificate exists nginx serves a temporary self-signed one.
    cert, key, reissued = ensure_self_signed(layout, app, tls.domains)
    return point_tls(layout, cert, key) or reissued, True


def finish_acme(layout: Layout, tls: AcmeTls) -> None:
    """Get the ACME certificate (nginx serves the challenge by now) and point nginx at it;
    the caller reloads nginx."""
    acme_obtain(layout, tls)
    fullchain, privkey = acme_live(layout, tls.domains)
    if not os.path.exists(fullchain):
        raise HostError(f"certbot finished but {fullchain} does not exist; see "
                        f"{layout.acme_dir('logs')}")
    point_tls(layout, fullchain, privkey)
    state = load_state(layout)
    state["acmeDomains"] = list(tls.domains)
    save_state(layout, state)
