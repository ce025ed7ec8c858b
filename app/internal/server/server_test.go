package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-deploy/hello-gin/internal/config"
)

// testConfig is a valid configuration for tests; cfg mutators adjust it.
func testConfig(mods ...func(*config.Config)) config.Config {
	cfg := config.Config{
		Port:            8080,
		BindAddr:        "127.0.0.1",
		ShutdownTimeout: 5 * time.Second,
		GinMode:         gin.TestMode,
		InstanceID:      "test-instance",
		MetricsPath:     config.DefaultMetricsPath,

		ReadHeaderTimeout: config.DefaultReadHeaderTimeout,
		ReadTimeout:       config.DefaultReadTimeout,
		WriteTimeout:      config.DefaultWriteTimeout,
		IdleTimeout:       config.DefaultIdleTimeout,
	}
	for _, m := range mods {
		m(&cfg)
	}
	return cfg
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lines decodes every JSON log line.
func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(s.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func newTestServer(t *testing.T, opts Options) (*Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	}
	if opts.Config.ShutdownTimeout == 0 {
		opts.Config = testConfig()
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, logs
}

// do runs one request through the router in-process. remoteAddr is the TCP
// peer as the server would see it.
func do(t *testing.T, h http.Handler, method, target, remoteAddr string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	if remoteAddr != "" {
		req.RemoteAddr = remoteAddr
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decode[T any](t *testing.T, body io.Reader) T {
	t.Helper()
	var v T
	if err := json.NewDecoder(body).Decode(&v); err != nil {
		t.Fatalf("decode body: %v", err)
	}
	return v
}

func TestHealthz(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	rec := do(t, s.Handler(), http.MethodGet, "/healthz", "", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q", ct)
	}
	if got := decode[map[string]string](t, rec.Body); got["status"] != "ok" || len(got) != 1 {
		t.Errorf("body = %v", got)
	}
}

func TestReadyzReady(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	rec := do(t, s.Handler(), http.MethodGet, "/readyz", "", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, body %s", rec.Code, rec.Body)
	}
	if got := decode[map[string]string](t, rec.Body); got["status"] != "ready" {
		t.Errorf("body = %v", got)
	}
}

func TestReadyzStartupDelay(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }

	s, _ := newTestServer(t, Options{
		Config: testConfig(func(c *config.Config) { c.StartupDelay = 30 * time.Second }),
		Now:    clock,
	})
	h := s.Handler()

	rec := do(t, h, http.MethodGet, "/readyz", "", nil)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("during warm-up: status = %d", rec.Code)
	}
	if got := decode[map[string]string](t, rec.Body); got["status"] != "starting" {
		t.Errorf("body = %v", got)
	}
	// Liveness is unaffected by warm-up.
	if rec := do(t, h, http.MethodGet, "/healthz", "", nil); rec.Code != http.StatusOK {
		t.Errorf("healthz during warm-up: %d", rec.Code)
	}

	advance(29 * time.Second)
	if rec := do(t, h, http.MethodGet, "/readyz", "", nil); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("at 29s: status = %d", rec.Code)
	}
	advance(time.Second)
	if rec := do(t, h, http.MethodGet, "/readyz", "", nil); rec.Code != http.StatusOK {
		t.Fatalf("at 30s: status = %d", rec.Code)
	}
}

func TestReadyzHugeStartupDelayNeverPasses(t *testing.T) {
	d, err := time.ParseDuration("2562047h") // close to the largest Go duration
	if err != nil {
		t.Fatal(err)
	}
	s, _ := newTestServer(t, Options{Config: testConfig(func(c *config.Config) { c.StartupDelay = d })})
	if rec := do(t, s.Handler(), http.MethodGet, "/readyz", "", nil); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status = %d", rec.Code)
	}
}

func TestVersion(t *testing.T) {
	build := BuildInfo{Version: "v1.2.3", Commit: "abc123", BuildTime: "2025-01-01T00:00:00Z", GoVersion: "go1.test"}
	s, _ := newTestServer(t, Options{Build: build})
	rec := do(t, s.Handler(), http.MethodGet, "/version", "", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d", rec.Code)
	}
	got := decode[map[string]string](t, rec.Body)
	want := map[string]string{
		"version": "v1.2.3", "commit": "abc123",
		"buildTime": "2025-01-01T00:00:00Z", "goVersion": "go1.test",
	}
	if len(got) != len(want) {
		t.Errorf("body = %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

type whoami struct {
	ClientIP     string `json:"clientIP"`
	RemoteAddr   string `json:"remoteAddr"`
	Instance     string `json:"instance"`
	ForwardedFor string `json:"forwardedFor"`
	Proto        string `json:"proto"`
}

func TestWhoamiUntrustedPeerCannotForgeClientIP(t *testing.T) {
	// Default configuration: no trusted proxies at all.
	s, _ := newTestServer(t, Options{})
	rec := do(t, s.Handler(), http.MethodGet, "/whoami", "198.51.100.7:40000", http.Header{
		"X-Forwarded-For":   {"203.0.113.9"},
		"X-Real-Ip":         {"203.0.113.10"},
		"X-Forwarded-Proto": {"https"},
	})
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d", rec.Code)
	}
	got := decode[whoami](t, rec.Body)
	want := whoami{
		ClientIP:     "198.51.100.7",
		RemoteAddr:   "198.51.100.7:40000",
		Instance:     "test-instance",
		ForwardedFor: "203.0.113.9",
		Proto:        "https",
	}
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestWhoamiTrustedProxy(t *testing.T) {
	s, _ := newTestServer(t, Options{Config: testConfig(func(c *config.Config) {
		c.TrustedProxies = []string{"10.0.0.0/8"}
	})})
	h := s.Handler()

	t.Run("trusted peer, XFF honoured", func(t *testing.T) {
		rec := do(t, h, http.MethodGet, "/whoami", "10.1.2.3:5555", http.Header{
			"X-Forwarded-For":   {"203.0.113.9"},
			"X-Forwarded-Proto": {"https"},
		})
		got := decode[whoami](t, rec.Body)
		if got.ClientIP != "203.0.113.9" || got.RemoteAddr != "10.1.2.3:5555" || got.Proto != "https" {
			t.Errorf("got %+v", got)
		}
	})

	t.Run("trusted peer, chain through another trusted hop", func(t *testing.T) {
		// The client forged the first entry; the rightmost untrusted
		// address (appended by our proxy) wins.
		rec := do(t, h, http.MethodGet, "/whoami", "10.1.2.3:5555", http.Header{
			"X-Forwarded-For": {"1.1.1.1, 203.0.113.9, 10.9.9.9"},
		})
		got := decode[whoami](t, rec.Body)
		if got.ClientIP != "203.0.113.9" || got.ForwardedFor != "1.1.1.1, 203.0.113.9, 10.9.9.9" {
			t.Errorf("got %+v", got)
		}
	})

	t.Run("trusted peer, X-Real-IP", func(t *testing.T) {
		rec := do(t, h, http.MethodGet, "/whoami", "10.1.2.3:5555", http.Header{
			"X-Real-Ip": {"203.0.113.20"},
		})
		if got := decode[whoami](t, rec.Body); got.ClientIP != "203.0.113.20" {
			t.Errorf("got %+v", got)
		}
	})

	t.Run("untrusted peer, XFF ignored", func(t *testing.T) {
		rec := do(t, h, http.MethodGet, "/whoami", "198.51.100.7:40000", http.Header{
			"X-Forwarded-For": {"203.0.113.9"},
		})
		if got := decode[whoami](t, rec.Body); got.ClientIP != "198.51.100.7" {
			t.Errorf("got %+v", got)
		}
	})
}

func TestRequestID(t *testing.T) {
	s, logs := newTestServer(t, Options{})
	h := s.Handler()

	t.Run("sane incoming id is echoed", func(t *testing.T) {
		id := "0b7c5e0e-8f2a-4c3e-9a51-1f2d3c4b5a69"
		rec := do(t, h, http.MethodGet, "/healthz", "", http.Header{"X-Request-Id": {id}})
		if got := rec.Header().Get("X-Request-ID"); got != id {
			t.Errorf("X-Request-ID = %q, want %q", got, id)
		}
	})

	for name, bad := range map[string]string{
		"too long":      strings.Repeat("a", 129),
		"spaces":        "hello world",
		"newline":       "abc\ndef",
		"quotes":        `"><script>`,
		"non-ascii":     "ídé",
		"control chars": "abc\x00",
	} {
		t.Run("replaced when "+name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
			req.Header["X-Request-Id"] = []string{bad}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			got := rec.Header().Get("X-Request-ID")
			if got == bad || len(got) != 32 {
				t.Errorf("X-Request-ID = %q, want a generated id", got)
			}
		})
	}

	t.Run("128 chars accepted", func(t *testing.T) {
		id := strings.Repeat("x", 128)
		rec := do(t, h, http.MethodGet, "/healthz", "", http.Header{"X-Request-Id": {id}})
		if got := rec.Header().Get("X-Request-ID"); got != id {
			t.Errorf("X-Request-ID = %q", got)
		}
	})

	t.Run("generated ids are unique", func(t *testing.T) {
		a := do(t, h, http.MethodGet, "/healthz", "", nil).Header().Get("X-Request-ID")
		b := do(t, h, http.MethodGet, "/healthz", "", nil).Header().Get("X-Request-ID")
		if a == "" || a == b {
			t.Errorf("ids %q and %q", a, b)
		}
	})

	// Every request above produced exactly one log line carrying its id.
	for _, line := range logs.lines(t) {
		if id, _ := line["request_id"].(string); id == "" {
			t.Errorf("log line without request_id: %v", line)
		}
	}
}

func TestAccessLog(t *testing.T) {
	s, logs := newTestServer(t, Options{})
	rec := do(t, s.Handler(), http.MethodGet, "/whoami?token=s3cr3t&x=1", "192.0.2.44:1234",
		http.Header{"X-Request-Id": {"req-1"}})
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d", rec.Code)
	}

	if strings.Contains(logs.String(), "s3cr3t") {
		t.Errorf("query string leaked into logs: %s", logs.String())
	}
	lines := logs.lines(t)
	if len(lines) != 1 {
		t.Fatalf("want 1 log line, got %d: %s", len(lines), logs.String())
	}
	l := lines[0]
	checks := map[string]any{
		"msg":        "request",
		"level":      "INFO",
		"request_id": "req-1",
		"method":     "GET",
		"path":       "/whoami",
		"route":      "/whoami",
		"status":     float64(200),
		"client_ip":  "192.0.2.44",
		"bytes":      float64(rec.Body.Len()),
	}
	for k, want := range checks {
		if l[k] != want {
			t.Errorf("log %s = %#v, want %#v", k, l[k], want)
		}
	}
	if _, ok := l["latency_ms"].(float64); !ok {
		t.Errorf("latency_ms missing: %v", l)
	}
	if _, ok := l["time"]; !ok {
		t.Errorf("time missing: %v", l)
	}
}

func TestNotFound(t *testing.T) {
	s, logs := newTestServer(t, Options{})
	rec := do(t, s.Handler(), http.MethodGet, "/nope", "", nil)
	if rec.Code != http.StatusNotFound {
		t.Fatalf("status = %d", rec.Code)
	}
	if got := decode[map[string]string](t, rec.Body); got["error"] != "not found" {
		t.Errorf("body = %v", got)
	}
	if l := logs.lines(t); len(l) != 1 || l[0]["status"] != float64(404) {
		t.Errorf("logs = %v", l)
	}
}

func TestPanicRecovery(t *testing.T) {
	s, logs := newTestServer(t, Options{ExtraRoutes: func(r gin.IRoutes) {
		r.GET("/test/panic", func(*gin.Context) { panic("boom") })
	}})
	rec := do(t, s.Handler(), http.MethodGet, "/test/panic", "", http.Header{"X-Request-Id": {"p-1"}})
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status = %d", rec.Code)
	}
	lines := logs.lines(t)
	if len(lines) != 2 {
		t.Fatalf("want panic + access log lines, got %s", logs.String())
	}
	if lines[0]["msg"] != "panic recovered" || lines[0]["panic"] != "boom" || lines[0]["request_id"] != "p-1" {
		t.Errorf("panic log = %v", lines[0])
	}
	if lines[1]["status"] != float64(500) {
		t.Errorf("access log = %v", lines[1])
	}
}

func TestTestRoutesAreNotInProduction(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	for _, r := range s.engine.Routes() {
		switch r.Path {
		case PathHealthz, PathReadyz, PathVersion, PathWhoami, config.DefaultMetricsPath:
		default:
			t.Errorf("unexpected route %s %s", r.Method, r.Path)
		}
	}
}

// startServe runs Serve on a loopback listener and returns its base URL and
// a channel that receives Serve's result.
func startServe(t *testing.T, s *Server, ctx context.Context) (string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	return "http://" + ln.Addr().String(), done
}

func get(t *testing.T, url string) (int, string, error) {
	t.Helper()
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// slowRoute registers a test-only handler that signals when it starts and
// then blocks until release is closed.
func slowRoute(started chan<- struct{}, release <-chan struct{}) func(gin.IRoutes) {
	return func(r gin.IRoutes) {
		r.GET("/test/slow", func(c *gin.Context) {
			started <- struct{}{}
			<-release
			c.String(http.StatusOK, "slow done")
		})
	}
}

func TestGracefulShutdownDrainsInFlightRequests(t *testing.T) {
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	s, logs := newTestServer(t, Options{
		Config: testConfig(func(c *config.Config) {
			c.ShutdownDelay = 300 * time.Millisecond
			c.ShutdownTimeout = 5 * time.Second
		}),
		ExtraRoutes: slowRoute(started, release),
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, done := startServe(t, s, ctx)

	if code, _, err := get(t, base+"/readyz"); err != nil || code != http.StatusOK {
		t.Fatalf("readyz before shutdown: %d %v", code, err)
	}

	type result struct {
		code int
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		code, body, err := get(t, base+"/test/slow")
		slow <- result{code, body, err}
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("slow request never started")
	}

	shutdownAt := time.Now()
	cancel() // what SIGTERM does in main

	// Readiness flips immediately; during SHUTDOWN_DELAY the listener is
	// still open, so a load balancer probing it sees 503.
	deadline := time.Now().Add(time.Second)
	for {
		code, body, err := get(t, base+"/readyz")
		if err == nil && code == http.StatusServiceUnavailable {
			if !strings.Contains(body, "shutting down") {
				t.Errorf("readyz body = %s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz never turned 503 during the shutdown delay: %d %v", code, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if elapsed := time.Since(shutdownAt); elapsed > 250*time.Millisecond {
		t.Errorf("readyz turned 503 only after %s", elapsed)
	}
	if s.Ready() {
		t.Error("Ready() = true after shutdown began")
	}

	// Wait until the listener is closed, then finish the in-flight request.
	deadline = time.Now().Add(3 * time.Second)
	for {
		if _, _, err := get(t, base+"/healthz"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting after the shutdown delay")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if time.Since(shutdownAt) < 300*time.Millisecond {
		t.Errorf("listener closed before SHUTDOWN_DELAY elapsed")
	}
	select {
	case err := <-done:
		t.Fatalf("Serve returned %v before the in-flight request finished", err)
	default:
	}
	close(release)

	r := <-slow
	if r.err != nil || r.code != http.StatusOK || r.body != "slow done" {
		t.Errorf("in-flight request: %d %q %v", r.code, r.body, r.err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil after a clean drain", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after drain")
	}
	var msgs []string
	for _, l := range logs.lines(t) {
		msgs = append(msgs, l["msg"].(string))
	}
	if !strings.Contains(strings.Join(msgs, ","), "shutdown started") ||
		msgs[len(msgs)-1] != "shutdown complete" {
		t.Errorf("lifecycle logs = %v", msgs)
	}
}

func TestShutdownTimeoutExceeded(t *testing.T) {
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	s, _ := newTestServer(t, Options{
		Config:      testConfig(func(c *config.Config) { c.ShutdownTimeout = 100 * time.Millisecond }),
		ExtraRoutes: slowRoute(started, release),
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, done := startServe(t, s, ctx)

	go func() { _, _, _ = get(t, base+"/test/slow") }()
	<-started
	cancel()

	select {
	case err := <-done:
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Serve = %v, want deadline exceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not give up after SHUTDOWN_TIMEOUT")
	}
}

func TestServeReportsListenerFailure(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // Serve on a closed listener fails at once
	if err := s.Serve(context.Background(), ln); err == nil {
		t.Fatal("Serve on a closed listener returned nil")
	}
}

func TestListenAndServeBindError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	s, _ := newTestServer(t, Options{Config: testConfig(func(c *config.Config) { c.Port = port })})
	if err := s.ListenAndServe(context.Background()); err == nil {
		t.Fatal("expected address-in-use error")
	}
}

func TestNewRejectsBadTrustedProxies(t *testing.T) {
	_, err := New(Options{Config: testConfig(func(c *config.Config) { c.TrustedProxies = []string{"nonsense"} })})
	if err == nil {
		t.Fatal("expected error")
	}
}
