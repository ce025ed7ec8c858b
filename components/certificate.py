"""DnsValidatedCertificate: an ACM certificate validated through Route 53.

The CDK pattern (`Certificate` + `CertificateValidation.fromDns(zone)`) as one
component, used wherever gin-deploy needs a certificate (ECS load balancers,
CloudFront): the certificate, one validation record per distinct name (`*.x` and
`x` share one) and the CertificateValidation, whose ARN resolves only once ACM
has issued the certificate - so whatever takes `certificate_arn` waits for it.

The region is the provider's: pass `provider` in the options (CloudFront needs
us-east-1). Children are named after the component: `<name>`,
`<name>-validation-<i>`, `<name>-validation`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

ValidationOption = aws.acm.outputs.CertificateDomainValidationOption


@dataclass(frozen=True)
class DnsValidatedCertificateArgs:
    domain: str
    # The public Route 53 zone that holds `domain` and every name in `sans`.
    zone_id: pulumi.Input[str]
    # More names on the certificate (`*.` wildcards allowed).
    sans: Sequence[str] = ()
    key_algorithm: str = "RSA_2048"
    validation_ttl: int = 300


def validation_names(domain: str, sans: Sequence[str]) -> list[str]:
    """The names that need a validation record: `*.x` is validated by x's record."""
    distinct: dict[str, str] = {}
    for name in (domain, *sans):
        distinct.setdefault(name.removeprefix("*."), name)
    return list(distinct.values())


class DnsValidatedCertificate(pulumi.ComponentResource):
    """An ACM certificate for `domain` (+ `sans`), DNS-validated in one Route 53 zone."""

    certificate: aws.acm.Certificate
    validation_records: list[aws.route53.Record]
    validation: aws.acm.CertificateValidation
    # The certificate's ARN once it is issued.
    certificate_arn: pulumi.Output[str]

    def __init__(self, name: str, args: DnsValidatedCertificateArgs,
                 opts: pulumi.ResourceOptions | None = None, *,
                 moved_from: pulumi.Resource | pulumi.Input[str] | None = None) -> None:
        """`moved_from`: the parent (resource or URN) these resources had before this
        component existed; each keeps its URN through an alias, so nothing is replaced."""
        super().__init__("gin-deploy:certificate:DnsValidatedCertificate", name, None, opts)
        if not args.domain:
            raise ValueError(f"{name}: domain is required")
        sans = list(dict.fromkeys(args.sans))
        aliases = [pulumi.Alias(parent=moved_from)] if moved_from is not None else None

        def child() -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, aliases=aliases)

        self.certificate = aws.acm.Certificate(
            name,
            domain_name=args.domain,
            subject_alternative_names=sans or None,
            validation_method="DNS",
            key_algorithm=args.key_algorithm,
            opts=child(),
        )
        self.validation_records = []
        for i, domain_name in enumerate(validation_names(args.domain, sans)):
            option = self.certificate.domain_validation_options.apply(_pick(domain_name))
            self.validation_records.append(aws.route53.Record(
                f"{name}-validation-{i}",
                zone_id=args.zone_id,
                name=option.apply(lambda o: _record_field(o, "resource_record_name")),
                type=option.apply(lambda o: _record_field(o, "resource_record_type")),
                records=[option.apply(lambda o: _record_field(o, "resource_record_value"))],
                ttl=args.validation_ttl,
                # ACM asks for the same record for a name in every region of an account
                # (and for every certificate of it): several may write it.
                allow_overwrite=True,
                opts=child(),
            ))
        self.validation = aws.acm.CertificateValidation(
            f"{name}-validation",
            certificate_arn=self.certificate.arn,
            validation_record_fqdns=[r.fqdn for r in self.validation_records],
            opts=child(),
        )
        self.certificate_arn = self.validation.certificate_arn
        self.register_outputs({"certificateArn": self.certificate_arn})


def _pick(domain_name: str) -> Callable[[Sequence[ValidationOption]], ValidationOption]:
    """The validation record ACM asks for `domain_name` (the list is unordered)."""
    def pick(options: Sequence[ValidationOption]) -> ValidationOption:
        found = next((o for o in options if o.domain_name == domain_name), None)
        if found is None:
            raise ValueError(f"ACM returned no validation option for {domain_name}")
        return found
    return pick


def _record_field(option: ValidationOption, key: str) -> str:
    value = getattr(option, key)
    if not value:
        raise ValueError(f"ACM returned no {key} for {option.domain_name}")
    return str(value)
