"""The gin-deploy CrossGuard policy pack: `pulumi preview --policy-pack policy`.

A host's rules read the deploy payload, which carries the binary's sha256: in a
preview that rebuilds the binary it is unknown, and the engine reports the policy
as not run (advisory). `pulumi up` then checks it before the deploy step runs, and
a violation stops the update before anything reaches the host.
"""

from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy
from rules import RULES, violations

DESCRIPTIONS = {
    "host-tls-and-secrets": "Hosts serve TLS 1.2+ only, redirect HTTP, send HSTS, and get "
                            "secrets only as secrets.",
    "https-only-tls12-plus": "Listeners and CDNs speak HTTPS with TLS >= 1.2 only.",
    "no-world-open-ports": "Nothing is open to the world except load balancers' 80/443.",
    "containers-hardened": "Containers run non-root with a read-only root filesystem and "
                           "no secrets in plain env vars.",
    "logs-retained": "Log groups have a retention period.",
}


def _validator(policy_name: str):
    def validate(args, report_violation) -> None:
        for _name, message in violations(args.resource_type, args.props, policy_name):
            report_violation(f"{args.name}: {message}", args.urn)
    return validate


PolicyPack(
    name="gin-deploy",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        ResourceValidationPolicy(name=name, description=DESCRIPTIONS[name],
                                 validate=_validator(name))
        for name in sorted({rule_name for rule_name, _ in RULES.values()})
    ],
)
