"""The invariants gin-deploy promises, as pure functions of (type, properties).

Each check returns a list of violation messages; `__main__.py` wires them into a
CrossGuard policy pack. Kept free of pulumi_policy so they are unit-testable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

Props = Mapping[str, Any]
SECRET_NAME = re.compile(
    r"(?i)(pass(word|wd)?|secret|token|api[_-]?key|private[_-]?key|credential)")
WORLD = {"0.0.0.0/0", "::/0"}
LB_PORTS = {80, 443}
TLS13_POLICY_PREFIX = "ELBSecurityPolicy-TLS13-"


def _unwrap(value: Any) -> Any:
    """pulumi_policy hands secrets over wrapped; the rules look at the values."""
    inner = getattr(value, "value", None)
    return inner if inner is not None and type(value).__name__ == "Secret" else value


def _json(value: Any) -> Any:
    value = _unwrap(value)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _secret_looking_names(names: list[str], allowed: frozenset[str] = frozenset()) -> list[str]:
    return sorted(n for n in names if SECRET_NAME.search(n) and n not in allowed)


# --- hosts (the agent's payload) -------------------------------------------------

def host_deploy(props: Props) -> list[str]:
    payload = _json(props.get("stdin"))
    if not isinstance(payload, dict) or "nginx" not in payload:
        return []
    problems: list[str] = []
    site = payload["nginx"].get("site") or ""
    protocols = re.findall(r"ssl_protocols\s+([^;]+);", site)
    if not protocols or any(set(p.split()) - {"TLSv1.2", "TLSv1.3"} for p in protocols):
        problems.append(f"nginx must allow only TLSv1.2 and TLSv1.3, got {protocols}")
    if not re.search(r"return\s+30[18]\s+https://", site):
        problems.append("nginx must redirect HTTP to HTTPS")
    if "Strict-Transport-Security" not in site:
        problems.append("nginx must send HSTS")
    env = payload.get("env") or {}
    bad = _secret_looking_names(list(env), frozenset(payload.get("secretEnvKeys") or []))
    if bad:
        problems.append(f"env vars {bad} look like secrets: declare them in app.secretEnv")
    programs = (payload.get("supervisord") or {}).get("programs") or ""
    if programs and "logfile_backups" not in programs:
        problems.append("supervisord logs must rotate with bounded backups")
    return problems


# --- AWS -------------------------------------------------------------------------

def lb_listener(props: Props) -> list[str]:
    protocol = props.get("protocol")
    if protocol == "HTTPS":
        policy = props.get("sslPolicy") or ""
        if not policy.startswith(TLS13_POLICY_PREFIX):
            return [f"HTTPS listeners must use a TLS 1.3/1.2 policy, got {policy!r}"]
        return []
    if protocol == "HTTP":
        actions = props.get("defaultActions") or []
        redirects = [a for a in actions if a.get("type") == "redirect"
                     and (a.get("redirect") or {}).get("protocol") == "HTTPS"]
        if not redirects:
            return ["HTTP listeners must only redirect to HTTPS"]
    return []


def _is_world(cidrs: Any) -> bool:
    return bool(set(cidrs or []) & WORLD)


def _open_ports(from_port: Any, to_port: Any) -> set[int]:
    if from_port is None or to_port is None:
        return {-1}
    lo, hi = int(from_port), int(to_port)
    return {-1} if hi - lo > 1024 or lo < 0 else set(range(lo, hi + 1))


def security_group(props: Props) -> list[str]:
    problems = []
    for rule in props.get("ingress") or []:
        if _is_world(rule.get("cidrBlocks")) or _is_world(rule.get("ipv6CidrBlocks")):
            ports = _open_ports(rule.get("fromPort"), rule.get("toPort"))
            if not ports <= LB_PORTS:
                problems.append(f"ingress open to the world beyond 80/443: ports "
                                f"{rule.get('fromPort')}-{rule.get('toPort')}")
    return problems


def security_group_ingress_rule(props: Props) -> list[str]:
    world = props.get("cidrIpv4") in WORLD or props.get("cidrIpv6") in WORLD
    if world and not _open_ports(props.get("fromPort"), props.get("toPort")) <= LB_PORTS:
        return [f"ingress open to the world beyond 80/443: ports "
                f"{props.get('fromPort')}-{props.get('toPort')}"]
    return []


def task_definition(props: Props) -> list[str]:
    containers = _json(props.get("containerDefinitions")) or []
    problems = []
    for c in containers:
        name = c.get("name")
        user = str(c.get("user") or "")
        if not user or user.split(":")[0] in ("0", "root"):
            problems.append(f"container {name} must run as a non-root numeric user")
        if c.get("readonlyRootFilesystem") is not True:
            problems.append(f"container {name} must have a read-only root filesystem")
        if c.get("privileged"):
            problems.append(f"container {name} must not be privileged")
        bad = _secret_looking_names([e.get("name", "") for e in c.get("environment") or []])
        if bad:
            problems.append(f"container {name}: {bad} look like secrets; use `secrets`")
    return problems


def log_group(props: Props) -> list[str]:
    if not props.get("retentionInDays"):
        return ["log groups must set retentionInDays"]
    return []


def cloudfront_distribution(props: Props) -> list[str]:
    problems = []
    behaviors = [props.get("defaultCacheBehavior") or {},
                 *(props.get("orderedCacheBehaviors") or [])]
    for b in behaviors:
        if b.get("viewerProtocolPolicy") not in ("redirect-to-https", "https-only"):
            problems.append(f"viewers must use HTTPS, got {b.get('viewerProtocolPolicy')!r}")
    cert = props.get("viewerCertificate") or {}
    if not cert.get("cloudfrontDefaultCertificate"):
        version = cert.get("minimumProtocolVersion") or ""
        if not version.startswith(("TLSv1.2", "TLSv1.3")):
            problems.append(f"viewer TLS must be >= 1.2, got {version!r}")
    return problems


# --- Kubernetes ----------------------------------------------------------------

def k8s_deployment(props: Props) -> list[str]:
    pod = ((props.get("spec") or {}).get("template") or {}).get("spec") or {}
    pod_ctx = pod.get("securityContext") or {}
    problems = []
    for c in pod.get("containers") or []:
        ctx = c.get("securityContext") or {}
        name = c.get("name")
        if not (ctx.get("runAsNonRoot") or pod_ctx.get("runAsNonRoot")):
            problems.append(f"container {name} must set runAsNonRoot")
        if ctx.get("readOnlyRootFilesystem") is not True:
            problems.append(f"container {name} must have a read-only root filesystem")
        plain = [e.get("name", "") for e in c.get("env") or [] if "value" in e]
        bad = _secret_looking_names(plain)
        if bad:
            problems.append(f"container {name}: {bad} look like secrets; use a Secret")
    return problems


# Resource type -> checks. Command resources are matched by type and the agent
# payload shape (only deploys carry one).
RULES: Mapping[str, tuple[str, Callable[[Props], list[str]]]] = {
    "command:local:Command": ("host-tls-and-secrets", host_deploy),
    "command:remote:Command": ("host-tls-and-secrets", host_deploy),
    "aws:lb/listener:Listener": ("https-only-tls12-plus", lb_listener),
    "aws:alb/listener:Listener": ("https-only-tls12-plus", lb_listener),
    "aws:ec2/securityGroup:SecurityGroup": ("no-world-open-ports", security_group),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        ("no-world-open-ports", security_group_ingress_rule),
    "aws:ecs/taskDefinition:TaskDefinition": ("containers-hardened", task_definition),
    "aws:cloudwatch/logGroup:LogGroup": ("logs-retained", log_group),
    "aws:cloudfront/distribution:Distribution": ("https-only-tls12-plus",
                                                 cloudfront_distribution),
    "kubernetes:apps/v1:Deployment": ("containers-hardened", k8s_deployment),
}


def violations(resource_type: str, props: Props,
               policy: str | None = None) -> list[tuple[str, str]]:
    """(policy name, message) for every broken promise of one resource; with `policy`,
    only that policy's rule runs (so other policies never read its properties, which
    may be unknown during a preview)."""
    rule = RULES.get(resource_type)
    if rule is None or (policy is not None and rule[0] != policy):
        return []
    name, check = rule
    return [(name, message) for message in check(props)]
