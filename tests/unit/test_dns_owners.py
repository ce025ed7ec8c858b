"""One writer per DNS record: no two resources of a stack write the same Route 53
record, so removing one never deletes what another still needs.

ACM asks every certificate of an account for a name - in any region - for the same
validation CNAME; the stack's certificates share it (components/certificate.py)."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

import pulumi
import pytest

from tests.unit import harness
from tests.unit.test_edge import (
    CERTIFICATE,
    DOMAIN,
    EdgeMocks,
    home,  # noqa: F401  (autouse: the prod host target's key file)
    install_mocks,
    own,
    prod_config,
    run,
    target,
)

RECORD = "aws:route53/record:Record"
VALIDATION = "aws:acm/certificateValidation:CertificateValidation"


def record_writers(mocks: harness.RecordingMocks) -> Counter[tuple[Any, ...]]:
    """How many resources write each Route 53 record (zone, name, type, set id)."""
    return Counter((r.inputs["zoneId"], r.inputs["name"].rstrip(".").lower(),
                    r.inputs["type"], r.inputs.get("setIdentifier"))
                   for r in mocks.of_type(RECORD))


@pytest.fixture(scope="module")
def prod() -> EdgeMocks:
    return run(prod_config())


def test_every_record_of_the_prod_stack_has_one_writer(prod: EdgeMocks) -> None:
    shared = {key: n for key, n in record_writers(prod).items() if n > 1}
    assert shared == {}


def test_the_cdn_certificate_validates_with_the_ecs_certificates_record(
        prod: EdgeMocks) -> None:
    # aws-use1's certificate (built first) writes the record for the domain ...
    record = prod.named("aws-use1-cert-validation-0").inputs
    assert record["name"] == f"_abc.{DOMAIN}."
    # ... and CloudFront's (us-east-1 too, same name) validates with it, writing none.
    assert [r.name for r in prod.of_type(RECORD) if r.name.startswith("hello-gin-edge-cert")] \
        == []
    validation = prod.named("hello-gin-edge-cert-validation", VALIDATION).inputs
    assert validation["validationRecordFqdns"] == [f"_abc.{DOMAIN}."]


def test_certificates_in_two_regions_share_the_record_of_a_name() -> None:
    mocks = run(prod_config(targets=[
        target("aws-use1"), target("aws-use1", name="aws-euw1", region="eu-west-1")]))
    assert {key: n for key, n in record_writers(mocks).items() if n > 1} == {}
    validation_records = sorted(r.name for r in mocks.of_type(RECORD)
                                if "-cert-validation-" in r.name)
    assert validation_records == ["aws-euw1-cert-validation-1", "aws-use1-cert-validation-0",
                                  "aws-use1-cert-validation-1"]
    assert mocks.named("aws-euw1-cert-validation-1").inputs["name"] == f"_abc.{own('aws-euw1')}."
    euw1 = mocks.named("aws-euw1-cert-validation", VALIDATION).inputs
    assert euw1["validationRecordFqdns"] == [f"_abc.{DOMAIN}.", f"_abc.{own('aws-euw1')}."]
    assert mocks.named("aws-euw1-cert", CERTIFICATE).inputs["domainName"] == DOMAIN


def test_without_an_ecs_target_the_cdn_certificate_writes_its_record() -> None:
    mocks = run(prod_config(targets=[target("k8s-eu"), target("edge-sin", weight=10)]))
    record = mocks.named("hello-gin-edge-cert-validation-0").inputs
    assert (record["name"], record["type"]) == (f"_abc.{DOMAIN}.", "CNAME")
    validation = mocks.named("hello-gin-edge-cert-validation", VALIDATION).inputs
    assert validation["validationRecordFqdns"] == [f"_abc.{DOMAIN}."]


def test_validation_records_survive_their_owners_delete() -> None:
    """When the owning certificate goes, the next one takes the name over: the old
    owner's delete must leave the record in Route 53 (it is the same record)."""
    install_mocks()
    seen: dict[str, pulumi.ResourceOptions] = {}

    def note(args: pulumi.ResourceTransformationArgs) -> None:
        if args.type_ == RECORD:
            seen[args.name] = args.opts

    harness.run_program(prod_config(), stack="prod", transforms=(note,))
    validation = {n: o for n, o in seen.items() if "-cert-validation-" in n}
    assert sorted(validation) == ["aws-use1-cert-validation-0", "aws-use1-cert-validation-1"]
    assert all(o.retain_on_delete for o in validation.values())
    # Every other record is the stack's alone and goes with it.
    assert not any(o.retain_on_delete for n, o in seen.items() if n not in validation)


def test_a_name_has_one_record_per_zone() -> None:
    from components.certificate import ValidationRecords

    book = ValidationRecords()
    zone = book.in_zone("Example.com.")
    record = cast(pulumi.CustomResource, object())
    zone.add(DOMAIN, record)  # type: ignore[arg-type]
    assert zone.get(DOMAIN) is record and book.in_zone("example.com").get(DOMAIN) is record
    assert book.in_zone("example.org").get(DOMAIN) is None
    with pytest.raises(ValueError, match="exists already"):
        zone.add(DOMAIN, record)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zone"):
        book.in_zone("")
