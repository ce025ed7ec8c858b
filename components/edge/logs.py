"""CloudFront access logs (standard logging v2) into S3, built by EdgeRouting.

CloudWatch Logs' delivery service writes them: a delivery source (the distribution's
ACCESS_LOGS), a destination (the bucket) and the delivery between them, all in
us-east-1 with the distribution. v2 needs no bucket ACLs, unlike the legacy
`logging_config`, so the bucket keeps ACLs off (BucketOwnerEnforced).

Without a bucket of the user's, the stack makes one: private (public access blocked),
SSE-S3, TLS only, logs expiring after `retention_days`. It outlives the stack
(`retain_on_delete`, with its settings): a `pulumi destroy` must not take the record
of who called the API with it; its lifecycle rule keeps emptying it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from gin_deploy.render import edge as render

LOG_TYPE = "ACCESS_LOGS"
OUTPUT_FORMATS = ("json", "w3c", "plain", "parquet")
# Under AWSLogs/<account>/CloudFront/ (added by AWS): per distribution and hour.
SUFFIX_PATH = "{DistributionId}/{yyyy}/{MM}/{dd}/{HH}"

ChildOptions = Callable[..., pulumi.ResourceOptions]


@dataclass(frozen=True)
class AccessLogsArgs:
    """Where CloudFront's access logs go."""

    # An existing bucket (its policy lets delivery.logs.amazonaws.com write); None: a
    # bucket of the stack.
    bucket: str | None = None
    # Days the stack's bucket keeps them.
    retention_days: int = 90
    output_format: str = "json"

    def __post_init__(self) -> None:
        if self.retention_days < 1:
            raise ValueError(f"retention_days must be >= 1, got {self.retention_days}")
        if self.output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {' | '.join(OUTPUT_FORMATS)}, "
                             f"got {self.output_format!r}")


@dataclass(frozen=True)
class AccessLogs:
    # The bucket's name (the stack's or the given one).
    bucket: pulumi.Output[str]
    delivery: aws.cloudwatch.LogDelivery


def build_access_logs(name: str, args: AccessLogsArgs, distribution_arn: pulumi.Output[str],
                      *, region: str, invoke: pulumi.InvokeOutputOptions,
                      child: ChildOptions) -> AccessLogs:
    """The delivery of `distribution_arn`'s access logs; resources `<name>-logs*` (the
    stack's bucket) and `<name>-access-logs*`."""
    partition = aws.get_partition_output(opts=invoke).partition
    ready: list[pulumi.Resource] = []
    if args.bucket is not None:
        bucket_name = pulumi.Output.from_input(args.bucket)
        bucket_arn = partition.apply(lambda p: f"arn:{p}:s3:::{args.bucket}")
    else:
        account = aws.get_caller_identity_output(opts=invoke).account_id
        bucket_name, bucket_arn, ready = _bucket(name, args, account, partition, region, child)
    source = aws.cloudwatch.LogDeliverySource(
        f"{name}-access-logs", log_type=LOG_TYPE, resource_arn=distribution_arn,
        opts=child())
    destination = aws.cloudwatch.LogDeliveryDestination(
        f"{name}-access-logs-destination",
        output_format=args.output_format,
        delivery_destination_configuration=aws.cloudwatch.
        LogDeliveryDestinationDeliveryDestinationConfigurationArgs(
            destination_resource_arn=bucket_arn),
        opts=child())
    delivery = aws.cloudwatch.LogDelivery(
        f"{name}-access-logs-delivery",
        delivery_source_name=source.name,
        delivery_destination_arn=destination.arn,
        s3_delivery_configurations=[aws.cloudwatch.LogDeliveryS3DeliveryConfigurationArgs(
            suffix_path=SUFFIX_PATH, enable_hive_compatible_path=False)],
        # The bucket's policy first: otherwise AWS writes one of its own.
        opts=child(depends_on=ready))
    return AccessLogs(bucket=bucket_name, delivery=delivery)


def _bucket(name: str, args: AccessLogsArgs, account: pulumi.Output[str],
            partition: pulumi.Output[str], region: str, child: ChildOptions,
            ) -> tuple[pulumi.Output[str], pulumi.Output[str], list[pulumi.Resource]]:
    def kept(**kwargs: object) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions.merge(child(**kwargs),
                                            pulumi.ResourceOptions(retain_on_delete=True))

    bucket = aws.s3.Bucket(f"{name}-logs", opts=kept())
    ownership = aws.s3.BucketOwnershipControls(
        f"{name}-logs-ownership", bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=kept())
    private = aws.s3.BucketPublicAccessBlock(
        f"{name}-logs-public-access", bucket=bucket.id, block_public_acls=True,
        block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
        opts=kept())
    encryption = aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-logs-encryption", bucket=bucket.id,
        rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
            apply_server_side_encryption_by_default=aws.s3.
            BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="AES256"),
            bucket_key_enabled=True)],
        opts=kept())
    lifecycle = aws.s3.BucketLifecycleConfiguration(
        f"{name}-logs-lifecycle", bucket=bucket.id,
        rules=[aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="expire-logs", status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
            expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
                days=args.retention_days),
            abort_incomplete_multipart_upload=aws.s3.
            BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=1))],
        opts=kept())
    policy = aws.s3.BucketPolicy(
        f"{name}-logs-policy", bucket=bucket.id,
        policy=pulumi.Output.all(bucket.arn, account, partition).apply(
            lambda v: json.dumps(render.log_bucket_policy(v[0], v[1], v[2], region),
                                 sort_keys=True)),
        # S3 refuses a bucket policy while the public access block is being set.
        opts=kept(depends_on=[private, ownership]))
    return bucket.bucket, bucket.arn, [policy, encryption, lifecycle]
