"""`status`: what runs where, asked of the live targets, never read from state alone.

Per target (the program's `targets` output says what to ask): the version the service
reports at GET /version on its public URL, ready vs wanted instances / tasks / pods, the
certificate served on the public port (issuer, days left), the edge health check, and
the last deploy's time and result. A target is healthy when none of that found a
problem; `Report.healthy` is every target's. The JSON form (`Report.as_json`) is a
contract (docs: ARCHITECTURE section 4): an object with `targets`, each with at least
name, kind, version, ready, wanted, certDaysLeft and healthy.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gin_deploy.status import cloud, hosts, probes

DEFAULT_MIN_CERT_DAYS = 14
# A host renews every 12 hours; no success for this long means renewal is broken.
RENEWAL_MAX_AGE_DAYS = 3.0


@dataclass
class TargetStatus:
    name: str
    kind: str
    url: str | None = None
    version: str | None = None
    ready: int | None = None
    wanted: int | None = None
    cert_days_left: float | None = None
    cert_issuer: str | None = None
    cert_not_after: str | None = None
    edge_health: str | None = None  # healthy | unhealthy | None (no edge health check)
    last_deploy: dict[str, Any] | None = None
    renewal: dict[str, Any] | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "url": self.url, "version": self.version,
            "ready": self.ready, "wanted": self.wanted, "certDaysLeft": self.cert_days_left,
            "certIssuer": self.cert_issuer, "certNotAfter": self.cert_not_after,
            "edgeHealth": self.edge_health, "lastDeploy": self.last_deploy,
            "renewal": self.renewal, "detail": self.detail, "healthy": self.healthy,
            "problems": self.problems,
        }


@dataclass
class Report:
    stack: str
    targets: list[TargetStatus]
    min_cert_days: float
    last_update: dict[str, Any] | None = None
    checked_at: str = ""

    @property
    def healthy(self) -> bool:
        return all(t.healthy for t in self.targets)

    def as_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "checkedAt": self.checked_at,
                "healthy": self.healthy, "minCertDays": self.min_cert_days,
                "lastUpdate": self.last_update,
                "targets": [t.as_json() for t in self.targets]}


@dataclass
class Clients:
    """How status reaches each kind of target; tests replace them."""

    ecs: Callable[[str], Any] = lambda region: _boto3().client("ecs", region_name=region)
    route53: Callable[[], Any] = lambda: _boto3().client("route53")
    kube: Callable[[Mapping[str, Any], Mapping[str, Any]], cloud.KubeClient] = \
        lambda target, cfg: cloud.Kubectl(target.get("context"), cfg.get("kubeconfig"),
                                          cfg.get("kubeconfigPath"))
    agent: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]] = \
        lambda target, cfg: hosts.query_agent(target, cfg.get("privateKey"),
                                              cfg.get("privateKeyPath"))


def _boto3() -> Any:
    import boto3  # only when a cloud target is asked

    return boto3


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age_days(text: str | None, now: datetime.datetime) -> float | None:
    if not text:
        return None
    try:
        moment = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC)
    except ValueError:
        return None
    return (now - moment).total_seconds() / 86400


def check_public(st: TargetStatus, ca_pem: str | None, min_days: float,
                 now: datetime.datetime) -> None:
    """Version and certificate as served on the public URL."""
    if not st.url:
        st.problems.append("no public URL in the stack's outputs (deploy first)")
        return
    try:
        cert = probes.served_cert(st.url, ca_pem)
    except (OSError, ValueError) as exc:
        st.problems.append(f"TLS handshake with {st.url} failed: {exc}")
        return
    st.cert_issuer, st.cert_not_after = cert.issuer, iso(cert.not_after)
    st.cert_days_left = cert.days_left(now)
    if not cert.trusted:
        st.problems.append(f"the certificate served at {st.url} is not trusted: {cert.error}")
    if st.cert_days_left < min_days:
        st.problems.append(f"the certificate served at {st.url} expires in "
                           f"{st.cert_days_left} days (< {min_days:g})")
    try:
        st.version = probes.served_version(st.url, ca_pem)
    except (OSError, ValueError) as exc:
        st.problems.append(f"GET {st.url}/version failed: {exc}")


def check_host(st: TargetStatus, agent: dict[str, Any], now: datetime.datetime,
               last_update: dict[str, Any] | None = None) -> None:
    st.ready, st.wanted = agent.get("ready"), agent.get("wanted")
    st.detail.update(release=agent.get("current"), nginxRunning=agent.get("nginxRunning"),
                     tlsMode=agent.get("tlsMode"))
    if st.ready is not None and st.wanted is not None and st.ready < st.wanted:
        st.problems.append(f"{st.ready} of {st.wanted} instances ready")
    if agent.get("nginxRunning") is False:
        st.problems.append("nginx is not running")
    st.last_deploy = agent.get("lastDeploy")
    if st.last_deploy and st.last_deploy.get("result") != "ok" and last_update and \
            last_update.get("result") == "succeeded" and \
            str(last_update.get("time", "")) > str(st.last_deploy.get("time", "")):
        # A later successful update converged the stack on what runs (e.g. the config
        # went back to the running release, so the engine had nothing to re-deploy).
        st.last_deploy = {"time": last_update["time"], "result": "ok",
                          "release": agent.get("current")}
    if st.last_deploy and st.last_deploy.get("result") != "ok":
        st.problems.append(f"the last deploy ({st.last_deploy.get('time')}) failed: "
                           f"{st.last_deploy.get('error')}")
    st.renewal = agent.get("renewal")
    if agent.get("tlsMode") != "acme":
        return  # self-signed: the deploy reissues; the days left above still count
    renewal = st.renewal or {}
    if renewal.get("lastResult") == "failed":
        st.problems.append(f"the last certificate renewal ({renewal.get('lastRun')}) "
                           f"failed: {renewal.get('error')}")
    since = renewal.get("lastSuccess") or (st.last_deploy or {}).get("time")
    age = _age_days(since, now)
    if age is not None and age > RENEWAL_MAX_AGE_DAYS:
        what = "succeeded" if renewal.get("lastSuccess") else "run since the deploy"
        st.problems.append(f"no certificate renewal has {what} for {age:.1f} days "
                           f"(> {RENEWAL_MAX_AGE_DAYS:g}); see logs/renew.log on the host")


def target_config(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The stack config entry of target `name` (decrypted secrets included)."""
    raw = config.get("gin-deploy:targets")
    targets = json.loads(raw) if isinstance(raw, str) else raw or []
    return next((t for t in targets if isinstance(t, dict) and t.get("name") == name), {})


def collect(stack: str, outputs: Mapping[str, Any], config: Mapping[str, Any], *,
            min_cert_days: float = DEFAULT_MIN_CERT_DAYS, clients: Clients | None = None,
            last_update: dict[str, Any] | None = None,
            now: datetime.datetime | None = None) -> Report:
    """Ask every target of the stack (its outputs and decrypted config)."""
    clients = clients or Clients()
    now = now or now_utc()
    health_checks = outputs.get("healthChecks") or {}
    report = Report(stack, [], min_cert_days, last_update, iso(now))
    if not outputs.get("targets"):
        report.targets.append(TargetStatus(stack, "stack", problems=[
            "the stack has no `targets` output: run `up` (with this version) first"]))
        return report
    for target in outputs["targets"]:
        st = TargetStatus(str(target["name"]), str(target["kind"]), target.get("url"))
        cfg = target_config(config, st.name)
        ca_pem = None
        try:
            if st.kind == "host":
                agent = clients.agent(target, cfg)
                ca_pem = agent.get("caCert")
                check_host(st, agent, now, last_update)
            elif st.kind == "ecs":
                rep = cloud.ecs_service(clients.ecs(str(target["region"])),
                                        str(target["cluster"]), str(target["service"]))
                st.ready, st.wanted, st.detail, st.problems = (
                    rep.ready, rep.wanted, rep.detail, rep.problems)
            elif st.kind == "kubernetes":
                rep = cloud.kubernetes_target(clients.kube(target, cfg), target)
                st.ready, st.wanted, st.detail, st.problems = (
                    rep.ready, rep.wanted, rep.detail, rep.problems)
        except Exception as exc:  # one target's failure is part of its status
            st.problems.append(f"could not ask the {st.kind} target: {exc}")
        if st.kind != "host":
            st.last_deploy = last_update
        if st.name in health_checks:
            try:
                st.edge_health, found = cloud.health_check_state(
                    clients.route53(), str(health_checks[st.name]))
                st.problems += found
            except Exception as exc:
                st.problems.append(f"could not read the edge health check: {exc}")
        check_public(st, ca_pem, min_cert_days, now)
        report.targets.append(st)
    return report


def table(report: Report) -> str:
    """The human form: one line per target, then its problems."""
    head = ("TARGET", "KIND", "VERSION", "READY", "CERT", "ISSUER", "EDGE", "LAST DEPLOY",
            "OK")
    rows = [head]
    for t in report.targets:
        deploy = t.last_deploy or {}
        rows.append((
            t.name, t.kind, t.version or "?",
            f"{'?' if t.ready is None else t.ready}/{'?' if t.wanted is None else t.wanted}",
            "?" if t.cert_days_left is None else f"{t.cert_days_left:g}d",
            t.cert_issuer or "?", t.edge_health or "-",
            f"{deploy.get('time', '?')} {deploy.get('result', '')}".strip() if deploy else "?",
            "yes" if t.healthy else "NO"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    for t in report.targets:
        lines += [f"  {t.name}: {p}" for p in t.problems]
    lines.append(f"stack {report.stack}: {'healthy' if report.healthy else 'UNHEALTHY'} "
                 f"(certificates need >= {report.min_cert_days:g} days)")
    return "\n".join(lines)
