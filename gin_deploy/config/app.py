"""`gin-deploy:app`: the service itself."""

from __future__ import annotations

from dataclasses import dataclass

from gin_deploy.agent.names import ENV_NAME_PATTERN, is_env_name
from gin_deploy.config.checks import abs_http_path, cidrs, resource_name, trusted_cidrs
from gin_deploy.config.image import ImageConfig, image_doc
from gin_deploy.config.schema import ParseContext, Problems, spec_field

# Env vars the deploy tooling sets itself; users must not override them.
RESERVED_ENV = frozenset({"PORT", "BIND_ADDR", "INSTANCE_ID"})
# Set from app.idleTimeout / app.writeTimeout, whose values the proxies in front are
# checked against (docs/ecs.md#timeouts): an env override would bypass that.
TIMEOUT_ENV = {"IDLE_TIMEOUT": "idleTimeout", "WRITE_TIMEOUT": "writeTimeout"}
# CloudFront waits at most this long for an origin's answer without a quota increase.
CLOUDFRONT_MAX_READ_TIMEOUT_S = 60
# Set by every target from vetted config: an override in app.env would bypass the checks
# (debug mode in production, or trusting forged client addresses).
TRUST_ENV = {"GIN_MODE": "gin-deploy always runs the service with GIN_MODE=release",
             "TRUSTED_PROXIES": "set app.trustedProxies (or the target's trustedProxies), "
                                "which are checked"}


def _env_map(value: dict[str, str]) -> str | None:
    bad = [k for k in value if not is_env_name(k)]
    if bad:
        return f"env var names must match {ENV_NAME_PATTERN}, got {bad}"
    reserved = sorted(RESERVED_ENV & set(value))
    if reserved:
        return f"{reserved} are set by gin-deploy per instance and cannot be overridden"
    timeouts = sorted(set(TIMEOUT_ENV) & set(value))
    if timeouts:
        keys = ", ".join(f"app.{TIMEOUT_ENV[k]}" for k in timeouts)
        return f"{timeouts} are set from {keys} (seconds), which the proxies in front are " \
               "checked against; set those instead"
    return None


def _env_names(value: tuple[str, ...]) -> str | None:
    bad = [k for k in value if not is_env_name(k)]
    if bad:
        return f"names must be valid env var names, got {bad}"
    return None


@dataclass(frozen=True)
class AppConfig:
    name: str = spec_field("name", "Service name; prefixes resources.", "hello-gin",
                           check=resource_name)
    source: str = spec_field("source", "Directory with go.mod (and a Dockerfile for image "
                             "targets), relative to the project.", "app")
    port: int = spec_field("port", "Port the service listens on in containers.", 8080,
                           min=1, max=65535)
    health_path: str = spec_field("healthPath", "Liveness endpoint.", "/healthz",
                                  check=abs_http_path)
    ready_path: str = spec_field("readyPath", "Readiness endpoint; gates rollouts.", "/readyz",
                                 check=abs_http_path)
    env: dict[str, str] = spec_field("env", "Plain env vars for the service.",
                                     default_factory=dict, check=_env_map)
    secret_env: tuple[str, ...] = spec_field(
        "secretEnv", "Names of secret config keys (`pulumi config set --secret NAME`) "
        "exposed to the service as env vars of the same name.", (), check=_env_names)
    version: str | None = spec_field("version", "Release version; default: a hash of the "
                                     "sources.", None)
    shutdown_timeout: int = spec_field("shutdownTimeout", "Seconds the service drains "
                                       "in-flight requests on SIGTERM; stop timeouts exceed it.",
                                       10, min=1, max=300)
    idle_timeout: int = spec_field(
        "idleTimeout", "Seconds a keep-alive connection may wait for its next request "
        "(`IDLE_TIMEOUT`); above the idle timeout of every proxy in front, so the proxy, "
        "not the service, closes idle connections (docs/ecs.md#timeouts).", 60, min=2,
        max=4000)
    write_timeout: int = spec_field(
        "writeTimeout", "Longest time in seconds the service takes to answer a request "
        "(`WRITE_TIMEOUT`); proxies in front wait as long, deregistration and stop "
        "timeouts cover it.", 30, min=1, max=3600)
    trusted_proxies: tuple[str, ...] = spec_field(
        "trustedProxies", "CIDRs whose X-Forwarded-For the service trusts (hosts: set to the "
        "loopback nginx automatically).", (), check=cidrs)
    image: ImageConfig | None = spec_field("image", image_doc(
        "for every ecs and kubernetes target; a target's own `image` overrides it"), None)

    def check(self, path: str, problems: Problems, ctx: ParseContext) -> None:
        if not (ctx.project_dir / self.source / "go.mod").is_file():
            problems.add(f"{path}.source", f"{self.source!r} has no go.mod (a directory "
                         "with the Gin service, relative to the project)")
        for i, name in enumerate(self.secret_env):
            if name in self.env:
                problems.add(f"{path}.secretEnv[{i}]", f"{name!r} is also a plain env var in "
                             "app.env; keep it in one place")
        for name in sorted(TRUST_ENV.keys() & {*self.env, *self.secret_env}):
            key = "env" if name in self.env else "secretEnv"
            problems.add(f"{path}.{key}", f"{name} cannot be overridden: {TRUST_ENV[name]}")
        problem = trusted_cidrs(self.trusted_proxies)
        if problem:
            problems.add(f"{path}.trustedProxies", problem)

    def check_edge(self, path: str, cdn: bool, problems: Problems) -> None:
        """What edge routing needs of the service (called by the stack parse)."""
        if cdn and self.write_timeout > CLOUDFRONT_MAX_READ_TIMEOUT_S:
            problems.add(f"{path}.writeTimeout", f"{self.write_timeout}s exceeds CloudFront's "
                         f"origin response timeout ({CLOUDFRONT_MAX_READ_TIMEOUT_S} s without a "
                         "quota increase): CloudFront would answer 504 first")
