"""What a security review asks of an EcsTarget, each on by config with a safe default:

* the ALB's access logs, into a bucket made for them (private, owner-enforced,
  SSE-S3 - the only encryption ELB log delivery supports -, TLS only, expiring
  after the target's log retention) unless you name your own;
* VPC flow logs of a new VPC (all traffic) into a CloudWatch log group;
* an optional WAF web ACL on the ALB: a per-IP rate limit and AWS's common rule set.

The documents come from gin_deploy/render/ecs_audit.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.ecs.common import Account, Scope, to_json
from gin_deploy.render import ecs_audit as render


@dataclass(frozen=True)
class AccessLogs:
    bucket: pulumi.Output[str]
    prefix: str
    # What the load balancer must wait for (ELB checks it may write when logs are enabled).
    ready: list[pulumi.Resource]


def access_logs_prefix(scope: Scope) -> str:
    return f"{scope.app}/{scope.stack}/{scope.name}"


def build_access_log_bucket(scope: Scope, account: Account,
                            retention_days: int) -> AccessLogs:
    """A bucket only ELB's log delivery writes to, under the target's prefix."""
    name, prefix = f"{scope.name}-alb-logs", access_logs_prefix(scope)
    # force_destroy off: `pulumi destroy` keeps failing while logs remain (like ECR).
    bucket = aws.s3.Bucket(name, force_destroy=False, opts=scope.opts())
    public = aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access", bucket=bucket.id, block_public_acls=True,
        block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
        opts=scope.opts())
    aws.s3.BucketOwnershipControls(
        f"{name}-ownership", bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=scope.opts())
    encryption = aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption", bucket=bucket.id,
        rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
            apply_server_side_encryption_by_default=aws.s3.
            BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="AES256"))],
        opts=scope.opts())
    aws.s3.BucketLifecycleConfiguration(
        f"{name}-lifecycle", bucket=bucket.id,
        rules=[aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="expire-access-logs", status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=f"{prefix}/"),
            expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
                days=retention_days),
            abort_incomplete_multipart_upload=aws.s3.
            BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=1),
        )],
        opts=scope.opts())
    policy = aws.s3.BucketPolicy(
        f"{name}-policy", bucket=bucket.id,
        policy=pulumi.Output.all(bucket.bucket, account.id, account.partition).apply(
            lambda v: to_json(render.alb_log_bucket_policy(
                bucket=v[0], prefix=prefix, account_id=v[1], partition=v[2]))),
        opts=scope.opts(depends_on=[public]))
    return AccessLogs(bucket=bucket.bucket, prefix=prefix, ready=[policy, encryption])


def build_flow_logs(scope: Scope, account: Account, vpc_id: pulumi.Input[str],
                    retention_days: int) -> aws.ec2.FlowLog:
    """Every accepted and rejected flow of the VPC, into a log group of its own."""
    name = f"{scope.name}-flow-logs"
    log_group = aws.cloudwatch.LogGroup(name, retention_in_days=retention_days,
                                        opts=scope.opts())
    role = aws.iam.Role(
        f"{name}-role",
        assume_role_policy=pulumi.Output.all(account.partition, account.id).apply(
            lambda v: to_json(render.flow_logs_trust_policy(
                partition=v[0], account_id=v[1], region=account.region))),
        description=f"VPC flow logs of {scope.label} into their log group",
        opts=scope.opts())
    policy = aws.iam.RolePolicy(
        f"{name}-policy", role=role.id,
        policy=log_group.arn.apply(
            lambda arn: to_json(render.flow_logs_role_policy(log_group_arn=arn))),
        opts=scope.opts())
    return aws.ec2.FlowLog(
        name, vpc_id=vpc_id, traffic_type="ALL", log_destination_type="cloud-watch-logs",
        log_destination=log_group.arn, iam_role_arn=role.arn,
        max_aggregation_interval=600,
        opts=scope.opts(depends_on=[policy]))


def build_web_acl(scope: Scope, load_balancer_arn: pulumi.Input[str],
                  rate_limit: int) -> aws.wafv2.WebAcl:
    """A regional web ACL on the ALB: allow by default, minus the rules' blocks."""
    metric = f"{scope.app}-{scope.stack}-{scope.name}"
    acl = aws.wafv2.WebAcl(
        f"{scope.name}-waf",
        scope="REGIONAL",
        description=f"{scope.label}: per-IP rate limit and AWS common rule set",
        default_action=aws.wafv2.WebAclDefaultActionArgs(
            allow=aws.wafv2.WebAclDefaultActionAllowArgs()),
        visibility_config=aws.wafv2.WebAclVisibilityConfigArgs(
            cloudwatch_metrics_enabled=True, sampled_requests_enabled=True,
            metric_name=metric),
        rule_json=to_json(render.web_acl_rules(rate_limit=rate_limit, metric_prefix=metric)),
        opts=scope.opts())
    aws.wafv2.WebAclAssociation(f"{scope.name}-waf", resource_arn=load_balancer_arn,
                                web_acl_arn=acl.arn, opts=scope.opts())
    return acl
