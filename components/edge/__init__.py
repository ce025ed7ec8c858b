"""Edge routing in two components: EdgeOrigins (before the targets: their names at
the edge and the origin lock) and EdgeRouting (after them: health checks, records,
CloudFront)."""

from components.edge.cdn import CdnArgs
from components.edge.origins import EdgeOrigins, EdgeOriginsArgs
from components.edge.routing import EdgeRouting, EdgeRoutingArgs, HealthCheckArgs

__all__ = ["CdnArgs", "EdgeOrigins", "EdgeOriginsArgs", "EdgeRouting", "EdgeRoutingArgs",
           "HealthCheckArgs"]
