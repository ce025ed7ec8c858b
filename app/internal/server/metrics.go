package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric names. Release analysis queries these, so they are part of the
// service's contract.
const (
	MetricRequests  = "hello_gin_http_requests_total"
	MetricDuration  = "hello_gin_http_request_duration_seconds"
	MetricBuildInfo = "hello_gin_build_info"

	// RouteUnmatched is the route label of requests no route matched. Gin
	// routes start with '/', so it cannot collide with a real one.
	RouteUnmatched = "unmatched"
)

// DurationBuckets span 5 ms to 10 s, dense from 50 ms to 1 s where p95
// limits such as 500 ms are judged, so the interpolated p95 is close.
var DurationBuckets = []float64{
	0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5,
	0.6, 0.75, 1, 1.5, 2, 3, 5, 10,
}

// knownMethods bounds the method label: anything else is "OTHER", so a
// client inventing methods cannot create series.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true,
	http.MethodPut: true, http.MethodPatch: true, http.MethodDelete: true,
	http.MethodOptions: true, http.MethodConnect: true, http.MethodTrace: true,
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	handler  http.Handler
}

// newMetrics registers the service's metrics on a registry of its own, so
// several servers (in tests) do not collide in the global one.
func newMetrics(build BuildInfo) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRequests,
			Help: "HTTP requests answered, by route template, method and status code.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricDuration,
			Help:    "Time to answer HTTP requests, by route template and method.",
			Buckets: DurationBuckets,
		}, []string{"route", "method"}),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        MetricBuildInfo,
		Help:        "Always 1; labelled with the version and commit of the running build.",
		ConstLabels: prometheus.Labels{"version": build.Version, "commit": build.Commit},
	})
	buildInfo.Set(1)
	reg.MustRegister(
		m.requests, m.duration, buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	return m
}

// middleware records every request except those to the routes in skip.
// The label is gin's route template, never the raw path, so the number of
// series stays bounded whatever paths clients send.
func (m *metrics) middleware(skip map[string]bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if skip[route] {
			return
		}
		if route == "" {
			route = RouteUnmatched
		}
		method := c.Request.Method
		if !knownMethods[method] {
			method = "OTHER"
		}
		m.requests.WithLabelValues(route, method, strconv.Itoa(c.Writer.Status())).Inc()
		m.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
	}
}

// serve answers only requests that came straight to the service. Every
// proxy in front of it (nginx, the ALB, the gateway, CloudFront) adds one of
// these headers, so through them the endpoint looks like any unknown path;
// Prometheus scrapes instances directly and sends none.
func (m *metrics) serve(c *gin.Context) {
	if proxied(c.Request.Header) {
		notFound(c)
		return
	}
	m.handler.ServeHTTP(c.Writer, c.Request)
}

// proxied reports whether a request carries a header that proxies add.
// Presence counts, even with an empty value.
func proxied(h http.Header) bool {
	for name := range h {
		switch name = http.CanonicalHeaderKey(name); {
		case name == "Forwarded", name == "Via", name == "X-Real-Ip",
			strings.HasPrefix(name, "X-Forwarded-"):
			return true
		}
	}
	return false
}
