package server

import (
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gin-deploy/hello-gin/internal/config"
)

func withMetrics(path string) func(*config.Config) {
	return func(c *config.Config) { c.MetricsPath = path }
}

// scrape reads the metrics endpoint the way Prometheus does (no proxy
// headers) and parses the text exposition.
func scrape(t *testing.T, h http.Handler, path string) map[string]*dto.MetricFamily {
	t.Helper()
	rec := do(t, h, http.MethodGet, path, "10.0.0.9:9090", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: status %d, body %s", path, rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return fams
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// requestCounts maps "route method status" to the counter value.
func requestCounts(t *testing.T, fams map[string]*dto.MetricFamily) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	f := fams[MetricRequests]
	if f == nil {
		return out
	}
	if f.GetType() != dto.MetricType_COUNTER {
		t.Fatalf("%s is a %v", MetricRequests, f.GetType())
	}
	for _, m := range f.GetMetric() {
		l := labelsOf(m)
		if len(l) != 3 {
			t.Errorf("%s labels = %v, want route, method, status", MetricRequests, l)
		}
		out[l["route"]+" "+l["method"]+" "+l["status"]] = m.GetCounter().GetValue()
	}
	return out
}

func metricsTestServer(t *testing.T) http.Handler {
	t.Helper()
	s, _ := newTestServer(t, Options{
		Config: testConfig(withMetrics("/metrics")),
		Build:  BuildInfo{Version: "v1.2.3", Commit: "abc123"},
		ExtraRoutes: func(r gin.IRoutes) {
			r.GET("/test/items/:id", func(c *gin.Context) { c.String(http.StatusOK, c.Param("id")) })
			r.GET("/test/panic", func(*gin.Context) { panic("boom") })
			r.Handle("PURGE", "/test/items/:id", func(c *gin.Context) { c.Status(http.StatusAccepted) })
		},
	})
	return s.Handler()
}

func TestMetricsCountByRouteTemplateMethodStatus(t *testing.T) {
	h := metricsTestServer(t)
	for _, target := range []string{"/test/items/1", "/test/items/2", "/test/items/3?x=y", "/nope", "/also/nope"} {
		do(t, h, http.MethodGet, target, "", nil)
	}
	do(t, h, http.MethodPost, "/whoami", "", nil) // no POST route: unmatched
	do(t, h, http.MethodGet, "/whoami", "", nil)
	do(t, h, "PURGE", "/test/items/7", "", nil)
	do(t, h, http.MethodGet, "/test/panic", "", nil)

	got := requestCounts(t, scrape(t, h, "/metrics"))
	want := map[string]float64{
		"/test/items/:id GET 200":   3, // one series, whatever the ids
		"unmatched GET 404":         2,
		"unmatched POST 404":        1,
		"/whoami GET 200":           1,
		"/test/items/:id OTHER 202": 1, // invented methods share one label
		"/test/panic GET 500":       1, // recovered panics count as 500s
	}
	if len(got) != len(want) {
		t.Errorf("series = %v\nwant %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s{%s} = %v, want %v", MetricRequests, k, got[k], v)
		}
	}
}

func TestMetricsLeaveOutOperationalRoutes(t *testing.T) {
	h := metricsTestServer(t)
	for _, p := range []string{PathHealthz, PathReadyz, PathVersion, "/metrics"} {
		do(t, h, http.MethodGet, p, "", nil)
	}
	// Through a proxy /metrics answers 404, which must not count either.
	do(t, h, http.MethodGet, "/metrics", "", http.Header{"X-Forwarded-For": {"203.0.113.1"}})
	fams := scrape(t, h, "/metrics")
	if got := requestCounts(t, fams); len(got) != 0 {
		t.Errorf("operational requests were counted: %v", got)
	}
	if f := fams[MetricDuration]; f != nil && len(f.GetMetric()) != 0 {
		t.Errorf("operational requests were timed: %v", f)
	}

	// The exclusion is by route, so a real route is still counted.
	do(t, h, http.MethodGet, PathWhoami, "", nil)
	if got := requestCounts(t, scrape(t, h, "/metrics")); got["/whoami GET 200"] != 1 || len(got) != 1 {
		t.Errorf("counts = %v", got)
	}
}

func TestMetricsDurationHistogram(t *testing.T) {
	s, _ := newTestServer(t, Options{
		Config: testConfig(withMetrics("/metrics")),
		ExtraRoutes: func(r gin.IRoutes) {
			r.GET("/test/sleep", func(c *gin.Context) {
				time.Sleep(60 * time.Millisecond)
				c.Status(http.StatusOK)
			})
		},
	})
	h := s.Handler()
	do(t, h, http.MethodGet, "/test/sleep", "", nil)
	do(t, h, http.MethodGet, "/whoami", "", nil)

	f := scrape(t, h, "/metrics")[MetricDuration]
	if f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("%s missing or not a histogram: %v", MetricDuration, f)
	}
	byRoute := map[string]*dto.Histogram{}
	for _, m := range f.GetMetric() {
		l := labelsOf(m)
		if len(l) != 2 || l["method"] != http.MethodGet {
			t.Errorf("labels = %v, want route and method", l)
		}
		byRoute[l["route"]] = m.GetHistogram()
	}
	slow := byRoute["/test/sleep"]
	if slow == nil || slow.GetSampleCount() != 1 || slow.GetSampleSum() < 0.06 {
		t.Fatalf("/test/sleep histogram = %v", slow)
	}
	var bounds []float64
	for _, b := range slow.GetBucket() {
		if math.IsInf(b.GetUpperBound(), 1) { // added by the text parser
			continue
		}
		bounds = append(bounds, b.GetUpperBound())
		// 60 ms is above the 50 ms bucket and inside the 75 ms one.
		if b.GetUpperBound() <= 0.05 && b.GetCumulativeCount() != 0 {
			t.Errorf("bucket le=%v holds the 60 ms request", b.GetUpperBound())
		}
	}
	if !slices.Equal(bounds, DurationBuckets) {
		t.Errorf("buckets = %v, want %v", bounds, DurationBuckets)
	}
	if DurationBuckets[0] != 0.005 || DurationBuckets[len(DurationBuckets)-1] != 10 {
		t.Errorf("buckets must span 5 ms..10 s: %v", DurationBuckets)
	}
	if byRoute["/whoami"].GetSampleCount() != 1 {
		t.Errorf("/whoami histogram = %v", byRoute["/whoami"])
	}
}

func TestMetricsBuildInfoAndRuntimeCollectors(t *testing.T) {
	fams := scrape(t, metricsTestServer(t), "/metrics")
	f := fams[MetricBuildInfo]
	if f == nil || f.GetType() != dto.MetricType_GAUGE || len(f.GetMetric()) != 1 {
		t.Fatalf("%s = %v", MetricBuildInfo, f)
	}
	m := f.GetMetric()[0]
	if l := labelsOf(m); len(l) != 2 || l["version"] != "v1.2.3" || l["commit"] != "abc123" {
		t.Errorf("%s labels = %v", MetricBuildInfo, l)
	}
	if m.GetGauge().GetValue() != 1 {
		t.Errorf("%s = %v, want 1", MetricBuildInfo, m.GetGauge().GetValue())
	}
	for _, name := range []string{"go_goroutines", "go_info", "process_start_time_seconds", "process_resident_memory_bytes"} {
		if fams[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
}

func TestMetricsRefuseProxiedRequests(t *testing.T) {
	h := metricsTestServer(t)
	unknown := do(t, h, http.MethodGet, "/no-such-path", "", nil)
	for name, value := range map[string]string{
		"X-Forwarded-For":   "203.0.113.1",
		"x-forwarded-for":   "203.0.113.1",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "api.example.com",
		"Forwarded":         "for=203.0.113.1;proto=https",
		"X-Real-Ip":         "203.0.113.1",
		"Via":               "1.1 abc.cloudfront.net (CloudFront)",
	} {
		t.Run(name, func(t *testing.T) {
			for _, v := range []string{value, ""} { // presence is enough
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				req.RemoteAddr = "10.0.0.9:1234"
				req.Header[name] = []string{v} // as given, not canonicalised
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusNotFound || rec.Body.String() != unknown.Body.String() {
					t.Errorf("%s=%q: %d %s, want the unknown-path 404", name, v, rec.Code, rec.Body)
				}
			}
		})
	}
	rec := do(t, h, http.MethodGet, "/metrics", "10.0.0.9:1234", http.Header{"User-Agent": {"Prometheus/3.0"}})
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), MetricBuildInfo) {
		t.Errorf("direct scrape: %d %s", rec.Code, rec.Body)
	}
}

func TestMetricsPathConfigurable(t *testing.T) {
	t.Run("custom path", func(t *testing.T) {
		s, _ := newTestServer(t, Options{Config: testConfig(withMetrics("/internal/prom"))})
		scrape(t, s.Handler(), "/internal/prom")
		if rec := do(t, s.Handler(), http.MethodGet, "/metrics", "", nil); rec.Code != http.StatusNotFound {
			t.Errorf("/metrics = %d, want 404", rec.Code)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		s, _ := newTestServer(t, Options{Config: testConfig(withMetrics(""))})
		if s.metrics != nil {
			t.Error("metrics collected while disabled")
		}
		if rec := do(t, s.Handler(), http.MethodGet, "/metrics", "", nil); rec.Code != http.StatusNotFound {
			t.Errorf("/metrics = %d, want 404", rec.Code)
		}
	})
	t.Run("a service route is refused", func(t *testing.T) {
		_, err := New(Options{Config: testConfig(withMetrics(PathWhoami))})
		if err == nil || !strings.Contains(err.Error(), PathWhoami) {
			t.Errorf("err = %v", err)
		}
	})
}

// The routes config.ReservedPaths guards must be the service's routes.
func TestReservedPathsMatchRoutes(t *testing.T) {
	s, _ := newTestServer(t, Options{Config: testConfig(withMetrics(""))})
	var paths []string
	for _, r := range s.engine.Routes() {
		paths = append(paths, r.Path)
	}
	slices.Sort(paths)
	want := slices.Sorted(slices.Values(config.ReservedPaths))
	if !slices.Equal(paths, want) {
		t.Errorf("routes %v, config.ReservedPaths %v", paths, want)
	}
}
