"""cert-manager's DNS-01 solver for Route 53 and what it needs in the cluster, as pure
functions (gin_deploy/render/kubernetes.py renders the issuer that uses it).

A ClusterIssuer reads its credentials in cert-manager's own namespace. Two ways in:

* a role by web identity (IRSA): the solver asks the API server for a token of a
  ServiceAccount made for it, `<issuer>-route53` in cert-manager's namespace, with the
  audience `sts.amazonaws.com`, and exchanges it for the role's credentials. It works on
  any cluster whose OIDC issuer the account trusts (EKS, or any other registered as an
  IAM identity provider); cert-manager's controller may create tokens of that one
  ServiceAccount only (a Role and RoleBinding).
* an access key in a Secret, `<issuer>-route53` (keys `access-key-id`,
  `secret-access-key`), optionally assuming a role with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Manifest = dict[str, Any]

# Where the Helm chart installs cert-manager, and its controller's ServiceAccount.
NAMESPACE = "cert-manager"
CONTROLLER_SERVICE_ACCOUNT = "cert-manager"
STS_AUDIENCE = "sts.amazonaws.com"
ACCESS_KEY_ID_KEY, SECRET_ACCESS_KEY_KEY = "access-key-id", "secret-access-key"


@dataclass(frozen=True)
class Route53Solver:
    """How cert-manager reaches Route 53: a role, an access key, or both (the key
    assumes the role). The key's secret part travels apart, as a Pulumi secret."""

    role_arn: str | None = None
    access_key_id: str | None = None
    hosted_zone_id: str | None = None

    def __post_init__(self) -> None:
        if not (self.role_arn or self.access_key_id):
            raise ValueError("route53: a role_arn or an access_key_id is required")

    @property
    def web_identity(self) -> bool:
        """The role by web identity (no access key)."""
        return self.access_key_id is None


def credentials_name(issuer: str) -> str:
    """The ServiceAccount (web identity) or Secret (access key) of an issuer."""
    return f"{issuer}-route53"


def route53_solver(issuer: str, solver: Route53Solver) -> dict[str, Any]:
    """The ACME solver entry of a ClusterIssuer: DNS-01 for every name it issues."""
    route53: dict[str, Any] = {}
    if solver.hosted_zone_id:
        route53["hostedZoneID"] = solver.hosted_zone_id
    if solver.role_arn:
        route53["role"] = solver.role_arn
    name = credentials_name(issuer)
    if not solver.web_identity:
        route53["accessKeyIDSecretRef"] = {"name": name, "key": ACCESS_KEY_ID_KEY}
        route53["secretAccessKeySecretRef"] = {"name": name, "key": SECRET_ACCESS_KEY_KEY}
    else:
        route53["auth"] = {"kubernetes": {"serviceAccountRef": {
            "name": name, "audiences": [STS_AUDIENCE]}}}
    return {"dns01": {"route53": route53}}


def _meta(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": labels}


def web_identity_objects(issuer: str, labels: dict[str, str]) -> list[Manifest]:
    """The ServiceAccount whose tokens the solver exchanges for the role, and the
    right of cert-manager's controller to request them (for that account only)."""
    name = credentials_name(issuer)
    role = f"{name}-token"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, labels),
         # Only cert-manager requests its tokens; no pod mounts one.
         "automountServiceAccountToken": False},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": _meta(role, labels),
         "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"],
                    "resourceNames": [name], "verbs": ["create"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(role, labels),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
         "subjects": [{"kind": "ServiceAccount", "name": CONTROLLER_SERVICE_ACCOUNT,
                       "namespace": NAMESPACE}]},
    ]


def credentials(issuer: str, labels: dict[str, str], solver: Route53Solver,
                secret_access_key: str) -> list[Manifest]:
    """What the solver authenticates with: the web identity objects, or the access key's
    Secret (`secret_access_key` in its stringData; the component sets the real one)."""
    if solver.web_identity:
        return web_identity_objects(issuer, labels)
    assert solver.access_key_id is not None
    return [access_key_secret(issuer, labels, solver.access_key_id, secret_access_key)]


def access_key_secret(issuer: str, labels: dict[str, str], access_key_id: str,
                      secret_access_key: str) -> Manifest:
    """The Secret the solver reads the access key from."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(credentials_name(issuer),
                                                                   labels),
            "type": "Opaque",
            "stringData": {ACCESS_KEY_ID_KEY: access_key_id,
                           SECRET_ACCESS_KEY_KEY: secret_access_key}}
