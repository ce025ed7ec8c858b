"""The stack config contract (namespace `gin-deploy`) as typed, validated, concrete values.

`load_stack_config()` reads the config once, in the program; components never
read config themselves. One module per section, each owning its fields, defaults
and rules; `stack.py` puts them together; `load.py` alone talks to the SDK.
"""

from gin_deploy.config.app import RESERVED_ENV, AppConfig
from gin_deploy.config.checks import is_dns_name
from gin_deploy.config.ecs import (
    FARGATE_MAX_DRAIN_S,
    FARGATE_SIZES,
    SSM_MAX_SECRET_BYTES,
    EcsTargetConfig,
)
from gin_deploy.config.edge import (
    CLOUDFRONT_MAX_CACHE_BEHAVIORS,
    ORIGIN_LABEL,
    AccessLogsConfig,
    EdgeConfig,
    HealthCheckConfig,
    WafConfig,
    routed_origin_name,
    target_origin_name,
)
from gin_deploy.config.host import HostTargetConfig
from gin_deploy.config.kubernetes import (
    CanaryConfig,
    KubernetesTargetConfig,
    RegistryConfig,
    Route53Config,
)
from gin_deploy.config.load import load_stack_config, read_raw_config
from gin_deploy.config.release import ReleaseConfig, ReleasePolicy
from gin_deploy.config.schema import NAMESPACE, ConfigError
from gin_deploy.config.stack import (
    TARGET_CLASSES,
    TOP_LEVEL_KEYS,
    RawValue,
    StackConfig,
    TargetConfig,
    parse_stack_config,
)
from gin_deploy.config.target import TARGET_KINDS, TargetBase
from gin_deploy.config.tls import DNS_01_ROUTE53, HTTP_01, AcmeConfig, HstsConfig, TlsConfig

__all__ = [
    "CLOUDFRONT_MAX_CACHE_BEHAVIORS",
    "DNS_01_ROUTE53",
    "FARGATE_MAX_DRAIN_S",
    "FARGATE_SIZES",
    "HTTP_01",
    "NAMESPACE",
    "ORIGIN_LABEL",
    "RESERVED_ENV",
    "SSM_MAX_SECRET_BYTES",
    "TARGET_CLASSES",
    "TARGET_KINDS",
    "TOP_LEVEL_KEYS",
    "AccessLogsConfig",
    "AcmeConfig",
    "AppConfig",
    "CanaryConfig",
    "ConfigError",
    "EcsTargetConfig",
    "EdgeConfig",
    "HealthCheckConfig",
    "HostTargetConfig",
    "HstsConfig",
    "KubernetesTargetConfig",
    "RawValue",
    "RegistryConfig",
    "ReleaseConfig",
    "ReleasePolicy",
    "Route53Config",
    "StackConfig",
    "TargetBase",
    "TargetConfig",
    "TlsConfig",
    "WafConfig",
    "is_dns_name",
    "load_stack_config",
    "parse_stack_config",
    "read_raw_config",
    "routed_origin_name",
    "target_origin_name",
]
