package server

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// Paths of the operational endpoints.
const (
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
	PathVersion = "/version"
	PathWhoami  = "/whoami"
)

// operationalRoutes are the routes probes, scrapes and the deploy program
// call, not users: they stay out of the request metrics (a probe every few
// seconds would dilute a release's error rate and latency) and injected
// faults never touch them (a faulty variant must still deploy, report its
// version and be scraped). The metrics path joins them when enabled.
func (s *Server) operationalRoutes() map[string]bool {
	ops := map[string]bool{PathHealthz: true, PathReadyz: true, PathVersion: true}
	if s.cfg.MetricsPath != "" {
		ops[s.cfg.MetricsPath] = true
	}
	return ops
}

func (s *Server) routes(r *gin.Engine, build BuildInfo) {
	r.GET(PathHealthz, healthz)
	r.GET(PathReadyz, s.readyz)
	r.GET(PathVersion, version(build))
	r.GET(PathWhoami, s.whoami)
	if s.metrics != nil {
		r.GET(s.cfg.MetricsPath, s.metrics.serve)
	}
	r.NoRoute(notFound)
}

func notFound(c *gin.Context) {
	c.JSON(http.StatusNotFound, gin.H{"error": "not found"})
}

// healthz is the liveness probe: the process is up and serving.
func healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz is the readiness probe: 503 while warming up or shutting down.
func (s *Server) readyz(c *gin.Context) {
	switch {
	case s.draining.Load():
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "shutting down"})
	case !s.Ready():
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "starting"})
	default:
		c.JSON(http.StatusOK, gin.H{"status": "ready"})
	}
}

func version(build BuildInfo) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.JSON(http.StatusOK, build)
	}
}

type whoamiResponse struct {
	ClientIP     string `json:"clientIP"`
	RemoteAddr   string `json:"remoteAddr"`
	Instance     string `json:"instance"`
	ForwardedFor string `json:"forwardedFor"`
	Proto        string `json:"proto"`
}

// whoami shows how the request reached this instance. clientIP honours
// X-Forwarded-For / X-Real-IP only when the peer is a trusted proxy.
func (s *Server) whoami(c *gin.Context) {
	c.JSON(http.StatusOK, whoamiResponse{
		ClientIP:     c.ClientIP(),
		RemoteAddr:   c.Request.RemoteAddr,
		Instance:     s.cfg.InstanceID,
		ForwardedFor: strings.Join(c.Request.Header.Values("X-Forwarded-For"), ", "),
		Proto:        c.GetHeader("X-Forwarded-Proto"),
	})
}
