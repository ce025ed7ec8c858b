"""A CloudWatch alarm on an ACM certificate's `DaysToExpiry`.

ACM renews a DNS-validated certificate on its own while the validation record exists;
when it cannot (the record was removed, a CAA record forbids Amazon), nothing fails
until browsers do. This alarm turns that into a state anyone (and `status`) can see.
ACM publishes the metric once a day in the certificate's region, so the alarm lives
there too: pass the provider of that region.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

DEFAULT_MIN_DAYS = 14  # ACM starts renewing 60 days ahead; this is well past failure


def days_to_expiry_alarm(name: str, certificate_arn: pulumi.Input[str],
                         provider: pulumi.ProviderResource, parent: pulumi.Resource,
                         min_days: int = DEFAULT_MIN_DAYS) -> aws.cloudwatch.MetricAlarm:
    return aws.cloudwatch.MetricAlarm(
        f"{name}-cert-expiry",
        alarm_description=f"The ACM certificate of {name} expires in fewer than "
                          f"{min_days} days: ACM could not renew it (is its DNS "
                          "validation record still there?)",
        namespace="AWS/CertificateManager",
        metric_name="DaysToExpiry",
        dimensions={"CertificateArn": certificate_arn},
        statistic="Minimum",
        period=86400,
        evaluation_periods=1,
        comparison_operator="LessThanThreshold",
        threshold=min_days,
        # ACM publishes once a day; a missing day is not an expiry.
        treat_missing_data="notBreaching",
        opts=pulumi.ResourceOptions(parent=parent, provider=provider),
    )
