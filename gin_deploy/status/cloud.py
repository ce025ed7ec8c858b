"""What the cloud APIs say about ECS services, Route 53 health checks and Kubernetes
Deployments / cert-manager Certificates. Each returns plain data; `problems` are the
reasons the target counts as unhealthy."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class Replicas:
    ready: int | None = None
    wanted: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def ecs_service(client: Any, cluster: str, service: str) -> Replicas:
    """`client` is boto3's ecs client of the target's region."""
    found = client.describe_services(cluster=cluster, services=[service]).get("services", [])
    if not found:
        return Replicas(problems=[f"ECS service {service} not found in cluster {cluster}"])
    svc = found[0]
    out = Replicas(int(svc.get("runningCount", 0)), int(svc.get("desiredCount", 0)))
    primary = next((d for d in svc.get("deployments", []) if d.get("status") == "PRIMARY"),
                   None)
    rollout = primary.get("rolloutState") if primary else None
    out.detail = {"rolloutState": rollout, "status": svc.get("status")}
    if svc.get("status") != "ACTIVE":
        out.problems.append(f"ECS service is {svc.get('status')}")
    if rollout == "FAILED":
        out.problems.append(f"the last ECS deployment failed: "
                            f"{primary.get('rolloutStateReason', '') if primary else ''}".strip())
    if out.ready is not None and out.wanted is not None and out.ready < out.wanted:
        out.problems.append(f"{out.ready} of {out.wanted} tasks running")
    return out


def health_check_state(client: Any, health_check_id: str) -> tuple[str, list[str]]:
    """`client` is boto3's route53 client. ("healthy" | "unhealthy", problems): healthy
    when most of Route 53's checkers see success, as Route 53 itself decides."""
    observations = client.get_health_check_status(HealthCheckId=health_check_id).get(
        "HealthCheckObservations", [])
    ok = sum(1 for o in observations
             if str(o.get("StatusReport", {}).get("Status", "")).startswith("Success"))
    if observations and ok * 2 > len(observations):
        return "healthy", []
    failing = next((o["StatusReport"]["Status"] for o in observations
                    if not str(o.get("StatusReport", {}).get("Status", "")).startswith(
                        "Success")), "no observations")
    return "unhealthy", [f"edge health check {health_check_id}: {ok}/{len(observations)} "
                         f"checkers see success ({failing})"]


class KubeClient(Protocol):
    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...


class Kubectl:
    """`kubectl get -o json` with the target's context or kubeconfig (a secret: written
    0600 to a private temp dir for the call and removed after)."""

    def __init__(self, context: str | None, kubeconfig: str | None = None,
                 kubeconfig_path: str | None = None) -> None:
        self.context, self.kubeconfig, self.kubeconfig_path = context, kubeconfig, \
            kubeconfig_path

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        exe = shutil.which("kubectl")
        if exe is None:
            raise RuntimeError("kubectl is not installed; status asks the cluster with it")
        args = [exe, "get", kind, name, "-n", namespace, "-o", "json"]
        if self.context:
            args += ["--context", self.context]
        with tempfile.TemporaryDirectory(prefix="gd-kube-") as tmp:
            if self.kubeconfig:
                path = Path(tmp) / "config"
                path.touch(mode=0o600)
                path.write_text(self.kubeconfig)
                args += ["--kubeconfig", str(path)]
            elif self.kubeconfig_path:
                args += ["--kubeconfig", str(Path(self.kubeconfig_path).expanduser())]
            proc = subprocess.run(args, capture_output=True, text=True, timeout=30,
                                  check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise RuntimeError(proc.stderr.strip() or f"kubectl exit {proc.returncode}")
        data = json.loads(proc.stdout)
        return data if isinstance(data, dict) else None


def kubernetes_target(client: KubeClient, target: Mapping[str, Any]) -> Replicas:
    """Deployment readyReplicas vs replicas, and cert-manager's Certificate Ready."""
    ns, name = str(target["namespace"]), str(target["deployment"])
    out = Replicas()
    deployment = client.get("deployment", ns, name)
    if deployment is None:
        out.problems.append(f"Deployment {ns}/{name} not found")
    else:
        spec, st = deployment.get("spec", {}), deployment.get("status", {})
        out.wanted = int(spec.get("replicas", 1))
        out.ready = int(st.get("readyReplicas", 0) or 0)
        if out.ready < out.wanted:
            out.problems.append(f"{out.ready} of {out.wanted} pods ready")
    cert_ref = target.get("certificate") or {}
    if cert_ref:
        cns, cname = str(cert_ref["namespace"]), str(cert_ref["name"])
        cert = client.get("certificates.cert-manager.io", cns, cname)
        conditions = (cert or {}).get("status", {}).get("conditions", [])
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        is_ready = ready is not None and ready.get("status") == "True"
        out.detail["certificateReady"] = is_ready
        if cert is not None:
            out.detail["certificateNotAfter"] = cert.get("status", {}).get("notAfter")
        if not is_ready:
            why = (ready or {}).get("message") or ("not found" if cert is None else "no Ready "
                                                   "condition yet")
            out.problems.append(f"cert-manager Certificate {cns}/{cname} is not Ready: {why}")
    return out
