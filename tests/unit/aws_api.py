"""What AWS would receive: recorded Pulumi inputs turned into the API calls the
provider makes from them, checked by botocore's parameter validator against each
service's own model (types, required members, enums, ranges, patterns where
botocore checks them).

The conversions follow the provider's mapping of each argument to the API member
of the same meaning; they cover the arguments gin-deploy sets, and fail on any
other (a new argument needs its mapping here before a test can pass).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

import botocore.loaders
import botocore.model
import botocore.validate

from tests.unit.harness import unsecret


@cache
def _model(service: str) -> botocore.model.ServiceModel:
    loader = botocore.loaders.Loader()
    return botocore.model.ServiceModel(loader.load_service_model(service, "service-2"), service)


def errors(service: str, operation: str, params: Mapping[str, Any]) -> str:
    """botocore's report of what is wrong with `params` for the call ('' when valid),
    plus the strings outside an enum or a pattern of the model (which botocore leaves
    to AWS)."""
    shape = _model(service).operation_model(operation).input_shape
    report = botocore.validate.ParamValidator().validate(dict(params), shape)
    problems = [report.generate_report()] if report.has_errors() else []
    problems += _string_errors(shape, params, "")
    return "\n".join(problems)


@cache
def _pattern(pattern: str) -> re.Pattern[str] | None:
    """The model's (Java) regex in Python, or None where Python cannot read it."""
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _string_errors(shape: botocore.model.Shape, value: Any, path: str) -> list[str]:
    if isinstance(shape, botocore.model.StructureShape) and isinstance(value, Mapping):
        return [e for key, item in value.items() if key in shape.members
                for e in _string_errors(shape.members[key], item, f"{path}.{key}".lstrip("."))]
    if isinstance(shape, botocore.model.ListShape) and isinstance(value, list):
        return [e for i, item in enumerate(value)
                for e in _string_errors(shape.member, item, f"{path}[{i}]")]
    if not isinstance(value, str):
        return []
    enum = getattr(shape, "enum", None) or []
    if enum and value not in enum:
        return [f"{path}: {value!r} is not one of {', '.join(enum)}"]
    pattern = _pattern(shape.metadata.get("pattern", ""))
    if pattern is not None and pattern.pattern and not pattern.fullmatch(value):
        return [f"{path}: {value!r} does not match {pattern.pattern}"]
    return []


def _numbers(value: Any) -> Any:
    """The engine carries every number as a double; the provider sends integers as such."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def _take(inputs: Mapping[str, Any], known: set[str]) -> dict[str, Any]:
    """The inputs, failing on any argument this module does not map."""
    values = {k: _numbers(unsecret(v)) for k, v in inputs.items() if not k.startswith("__")}
    unknown = set(values) - known
    assert not unknown, f"no API mapping for argument(s) {sorted(unknown)}"
    return values


def _items(values: list[Any]) -> dict[str, Any]:
    return {"Quantity": len(values), "Items": values}


# --- CloudFront ---------------------------------------------------------------------------

_ORIGIN_KEYS = {"originId", "domainName", "customHeaders", "connectionAttempts",
                "connectionTimeout", "customOriginConfig", "originPath"}
_CUSTOM_ORIGIN_KEYS = {"httpPort", "httpsPort", "originProtocolPolicy", "originSslProtocols",
                       "originReadTimeout", "originKeepaliveTimeout", "ipAddressType"}
_BEHAVIOR_KEYS = {"targetOriginId", "allowedMethods", "cachedMethods", "cachePolicyId",
                  "originRequestPolicyId", "responseHeadersPolicyId", "viewerProtocolPolicy",
                  "compress", "pathPattern"}
_DISTRIBUTION_KEYS = {"enabled", "comment", "aliases", "origins", "originGroups",
                      "defaultCacheBehavior", "orderedCacheBehaviors", "viewerCertificate",
                      "httpVersion", "isIpv6Enabled", "priceClass", "restrictions", "webAclId"}


def _origin(origin: Mapping[str, Any]) -> dict[str, Any]:
    o = _take(origin, _ORIGIN_KEYS)
    result: dict[str, Any] = {"Id": o["originId"], "DomainName": o["domainName"],
                              "OriginPath": o.get("originPath", "")}
    headers = [{"HeaderName": h["name"], "HeaderValue": unsecret(h["value"])}
               for h in o.get("customHeaders") or []]
    result["CustomHeaders"] = _items(headers)
    for key, member in (("connectionAttempts", "ConnectionAttempts"),
                        ("connectionTimeout", "ConnectionTimeout")):
        if key in o:
            result[member] = o[key]
    if "customOriginConfig" in o:
        c = _take(o["customOriginConfig"], _CUSTOM_ORIGIN_KEYS)
        config = {"HTTPPort": c["httpPort"], "HTTPSPort": c["httpsPort"],
                  "OriginProtocolPolicy": c["originProtocolPolicy"],
                  "OriginSslProtocols": _items(c["originSslProtocols"])}
        for key, member in (("originReadTimeout", "OriginReadTimeout"),
                            ("originKeepaliveTimeout", "OriginKeepaliveTimeout"),
                            ("ipAddressType", "IpAddressType")):
            if key in c:
                config[member] = c[key]
        result["CustomOriginConfig"] = config
    return result


def _behavior(behavior: Mapping[str, Any]) -> dict[str, Any]:
    b = _take(behavior, _BEHAVIOR_KEYS)
    result: dict[str, Any] = {
        "TargetOriginId": b["targetOriginId"],
        "ViewerProtocolPolicy": b["viewerProtocolPolicy"],
        "AllowedMethods": {**_items(b["allowedMethods"]),
                           "CachedMethods": _items(b["cachedMethods"])},
    }
    for key, member in (("pathPattern", "PathPattern"), ("compress", "Compress"),
                        ("cachePolicyId", "CachePolicyId"),
                        ("originRequestPolicyId", "OriginRequestPolicyId"),
                        ("responseHeadersPolicyId", "ResponseHeadersPolicyId")):
        if key in b:
            result[member] = b[key]
    return result


def cloudfront_distribution(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """CreateDistribution's parameters for an aws.cloudfront.Distribution."""
    d = _take(inputs, _DISTRIBUTION_KEYS)
    config: dict[str, Any] = {
        "CallerReference": "gin-deploy-test",
        "Comment": d["comment"],
        "Enabled": d["enabled"],
        "Aliases": _items(d.get("aliases") or []),
        "Origins": _items([_origin(o) for o in d["origins"]]),
        "DefaultCacheBehavior": _behavior(d["defaultCacheBehavior"]),
        "CacheBehaviors": _items([_behavior(b) for b in d.get("orderedCacheBehaviors") or []]),
    }
    groups = [{"Id": g["originId"],
               "FailoverCriteria": {"StatusCodes": _items(g["failoverCriteria"]["statusCodes"])},
               "Members": _items([{"OriginId": m["originId"]} for m in g["members"]])}
              for g in d.get("originGroups") or []]
    config["OriginGroups"] = _items(groups)
    if "viewerCertificate" in d:
        v = d["viewerCertificate"]
        config["ViewerCertificate"] = {
            "ACMCertificateArn": v["acmCertificateArn"], "SSLSupportMethod":
            v["sslSupportMethod"], "MinimumProtocolVersion": v["minimumProtocolVersion"]}
    geo = d["restrictions"]["geoRestriction"]
    config["Restrictions"] = {"GeoRestriction": {
        "RestrictionType": geo["restrictionType"], **_items(geo.get("locations") or [])}}
    for key, member in (("httpVersion", "HttpVersion"), ("isIpv6Enabled", "IsIPV6Enabled"),
                        ("priceClass", "PriceClass"), ("webAclId", "WebACLId")):
        if key in d:
            config[member] = d[key]
    return {"DistributionConfig": config}


# --- Route 53 -----------------------------------------------------------------------------

_RECORD_KEYS = {"zoneId", "name", "type", "ttl", "records", "aliases", "setIdentifier",
                "healthCheckId", "weightedRoutingPolicies", "latencyRoutingPolicies",
                "failoverRoutingPolicies", "allowOverwrite"}
_HEALTH_CHECK_KEYS = {"type", "fqdn", "port", "resourcePath", "enableSni", "requestInterval",
                      "failureThreshold", "tags"}


def route53_record(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """ChangeResourceRecordSets' parameters that create an aws.route53.Record."""
    r = _take(inputs, _RECORD_KEYS)
    record: dict[str, Any] = {"Name": r["name"], "Type": r["type"]}
    if "ttl" in r:
        record["TTL"] = int(r["ttl"])
    if "records" in r:
        record["ResourceRecords"] = [{"Value": v} for v in r["records"]]
    for alias in r.get("aliases") or []:
        record["AliasTarget"] = {"HostedZoneId": alias["zoneId"], "DNSName": alias["name"],
                                 "EvaluateTargetHealth": alias["evaluateTargetHealth"]}
    if "setIdentifier" in r:
        record["SetIdentifier"] = r["setIdentifier"]
    if "healthCheckId" in r:
        record["HealthCheckId"] = r["healthCheckId"]
    for policy in r.get("weightedRoutingPolicies") or []:
        record["Weight"] = int(policy["weight"])
    for policy in r.get("latencyRoutingPolicies") or []:
        record["Region"] = policy["region"]
    for policy in r.get("failoverRoutingPolicies") or []:
        record["Failover"] = policy["type"]
    action = "UPSERT" if r.get("allowOverwrite") else "CREATE"
    return {"HostedZoneId": r["zoneId"], "ChangeBatch": {"Changes": [
        {"Action": action, "ResourceRecordSet": record}]}}


def route53_health_check(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """CreateHealthCheck's parameters for an aws.route53.HealthCheck."""
    h = _take(inputs, _HEALTH_CHECK_KEYS)
    return {"CallerReference": "gin-deploy-test", "HealthCheckConfig": {
        "Type": h["type"], "FullyQualifiedDomainName": h["fqdn"], "Port": int(h["port"]),
        "ResourcePath": h["resourcePath"], "EnableSNI": h["enableSni"],
        "RequestInterval": int(h["requestInterval"]),
        "FailureThreshold": int(h["failureThreshold"])}}


# --- WAF, CloudWatch Logs deliveries ------------------------------------------------------

_WEB_ACL_KEYS = {"scope", "description", "defaultAction", "ruleJson", "visibilityConfig"}


def wafv2_web_acl(name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """CreateWebACL's parameters for an aws.wafv2.WebAcl (`name`: its physical name)."""
    w = _take(inputs, _WEB_ACL_KEYS)
    default = {("Allow" if k == "allow" else "Block"): {} for k in w["defaultAction"]}
    v = w["visibilityConfig"]
    return {"Name": name, "Scope": w["scope"], "Description": w["description"],
            "DefaultAction": default, "Rules": json.loads(w["ruleJson"]),
            "VisibilityConfig": {"SampledRequestsEnabled": v["sampledRequestsEnabled"],
                                 "CloudWatchMetricsEnabled": v["cloudwatchMetricsEnabled"],
                                 "MetricName": v["metricName"]}}


def logs_delivery_source(name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    s = _take(inputs, {"logType", "resourceArn"})
    return {"name": name, "logType": s["logType"], "resourceArn": s["resourceArn"]}


def logs_delivery_destination(name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    d = _take(inputs, {"outputFormat", "deliveryDestinationConfiguration"})
    return {"name": name, "outputFormat": d["outputFormat"],
            "deliveryDestinationConfiguration": {"destinationResourceArn":
                d["deliveryDestinationConfiguration"]["destinationResourceArn"]}}


def logs_delivery(inputs: Mapping[str, Any]) -> dict[str, Any]:
    d = _take(inputs, {"deliverySourceName", "deliveryDestinationArn",
                       "s3DeliveryConfigurations"})
    [s3] = d["s3DeliveryConfigurations"]
    return {"deliverySourceName": d["deliverySourceName"],
            "deliveryDestinationArn": d["deliveryDestinationArn"],
            "s3DeliveryConfiguration": {
                "suffixPath": s3["suffixPath"],
                "enableHiveCompatiblePath": s3["enableHiveCompatiblePath"]}}
