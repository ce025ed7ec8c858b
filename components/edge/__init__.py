"""Edge routing in two components: EdgeOrigins (before the targets: their names at
the edge and the origin lock) and EdgeRouting (after them: health checks, records,
CloudFront)."""

from components.edge.cdn import CdnArgs
from components.edge.logs import AccessLogsArgs
from components.edge.origins import EdgeOrigins, EdgeOriginsArgs
from components.edge.routing import EdgeRouting, EdgeRoutingArgs, HealthCheckArgs
from components.edge.waf import WafArgs

__all__ = ["AccessLogsArgs", "CdnArgs", "EdgeOrigins", "EdgeOriginsArgs", "EdgeRouting",
           "EdgeRoutingArgs", "HealthCheckArgs", "WafArgs"]
