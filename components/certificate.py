"""DnsValidatedCertificate: an ACM certificate validated through Route 53.

The CDK pattern (`Certificate` + `CertificateValidation.fromDns(zone)`) as one
component, used wherever gin-deploy needs a certificate (ECS load balancers,
CloudFront): the certificate, one validation record per distinct name (`*.x` and
`x` share one) and the CertificateValidation, whose ARN resolves only once ACM
has issued the certificate - so whatever takes `certificate_arn` waits for it.

One writer per record: ACM asks every certificate of an account for a name - in any
region - for the same CNAME, so certificates of one stack share `ValidationRecords`.
The first certificate (in program order) that needs a name creates its record; the
others validate with that record and create none. Were each to write it, removing
one certificate would delete the record the others renew with. Records are kept on
delete (`retain_on_delete`): when the owning certificate goes, the next one takes the
name over (a new resource, an UPSERT of the same record) and the old owner's delete
must not remove it; certificates outside the stack (other stacks, the console) may
rely on it too, which the stack cannot know. A CNAME left in the zone costs nothing.

The region is the provider's: pass `provider` in the options (CloudFront needs
us-east-1). Children are named after the component: `<name>`,
`<name>-validation-<i>` (i: the name's place in `validation_names`, whether this
certificate owns the record or not, so an existing record keeps its name),
`<name>-validation`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

ValidationOption = aws.acm.outputs.CertificateDomainValidationOption


class ValidationRecords:
    """The stack's ACM validation records, one per (zone, name): the first certificate
    that needs a name creates its record, later ones validate with it."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], aws.route53.Record] = {}

    def in_zone(self, zone: str) -> ZoneValidationRecords:
        """The records in the Route 53 zone named `zone` (what a certificate shares)."""
        if not zone:
            raise ValueError("zone: the hosted zone's name is required")
        return ZoneValidationRecords(self, zone.rstrip(".").lower())

    def get(self, zone: str, name: str) -> aws.route53.Record | None:
        return self._records.get((zone, name))

    def add(self, zone: str, name: str, record: aws.route53.Record) -> None:
        if (zone, name) in self._records:
            raise ValueError(f"a validation record for {name} in {zone} exists already")
        self._records[(zone, name)] = record

    def __len__(self) -> int:
        return len(self._records)


@dataclass(frozen=True)
class ZoneValidationRecords:
    """`ValidationRecords` of one zone."""

    book: ValidationRecords
    zone: str

    def get(self, name: str) -> aws.route53.Record | None:
        return self.book.get(self.zone, name)

    def add(self, name: str, record: aws.route53.Record) -> None:
        self.book.add(self.zone, name, record)


@dataclass(frozen=True)
class DnsValidatedCertificateArgs:
    domain: str
    # The public Route 53 zone that holds `domain` and every name in `sans`.
    zone_id: pulumi.Input[str]
    # More names on the certificate (`*.` wildcards allowed).
    sans: Sequence[str] = ()
    key_algorithm: str = "RSA_2048"
    validation_ttl: int = 300
    # The stack's records in the same zone: names another certificate validates already
    # use its record. None: this certificate writes a record for each of its names.
    shared_records: ZoneValidationRecords | None = None


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
        # The records this certificate validates with; `validation_records`: those it owns.
        records: list[aws.route53.Record] = []
        self.validation_records = []
        for i, domain_name in enumerate(validation_names(args.domain, sans)):
            key = domain_name.removeprefix("*.")
            shared = args.shared_records.get(key) if args.shared_records else None
            if shared is not None:
                records.append(shared)
                continue
            option = self.certificate.domain_validation_options.apply(_pick(domain_name))
            record = aws.route53.Record(
                f"{name}-validation-{i}",
                zone_id=args.zone_id,
                name=option.apply(lambda o: _record_field(o, "resource_record_name")),
                type=option.apply(lambda o: _record_field(o, "resource_record_type")),
                records=[option.apply(lambda o: _record_field(o, "resource_record_value"))],
                ttl=args.validation_ttl,
                # A certificate outside the stack (or an owner this stack had before) may
                # have written the same record: take it over rather than fail.
                allow_overwrite=True,
                opts=pulumi.ResourceOptions.merge(
                    child(), pulumi.ResourceOptions(retain_on_delete=True)),
            )
            if args.shared_records is not None:
                args.shared_records.add(key, record)
            records.append(record)
            self.validation_records.append(record)
        self.validation = aws.acm.CertificateValidation(
            f"{name}-validation",
            certificate_arn=self.certificate.arn,
            validation_record_fqdns=[r.fqdn for r in records],
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
