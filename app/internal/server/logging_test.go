package server

import (
	"context"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-deploy/hello-gin/internal/config"
)

func TestEveryLogLineNamesTheBuild(t *testing.T) {
	logs := &syncBuffer{}
	build := BuildInfo{Version: "v1.2.3", Commit: "abc123"}
	s, _ := newTestServer(t, Options{
		Build:  build,
		Logger: NewLogger(logs, build),
		ExtraRoutes: func(r gin.IRoutes) {
			r.GET("/test/panic", func(*gin.Context) { panic("boom") })
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, done := startServe(t, s, ctx)
	for _, p := range []string{"/whoami", "/nope", "/test/panic"} {
		if _, _, err := get(t, base+p); err != nil {
			t.Fatal(err)
		}
	}
	s.http.ErrorLog.Print("http: a net/http complaint")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}

	var msgs []string
	for _, l := range logs.lines(t) {
		msgs = append(msgs, l["msg"].(string))
		if l["service_version"] != "v1.2.3" || l["commit"] != "abc123" {
			t.Errorf("log line without the build: %v", l)
		}
	}
	for _, want := range []string{"listening", "request", "panic recovered", "http: a net/http complaint",
		"shutdown started", "shutdown complete"} {
		if !slices.Contains(msgs, want) {
			t.Errorf("no %q line among %v", want, msgs)
		}
	}
}

func TestServerUsesConfiguredTimeouts(t *testing.T) {
	s, _ := newTestServer(t, Options{Config: testConfig(func(c *config.Config) {
		c.ReadHeaderTimeout = 1 * time.Second
		c.ReadTimeout = 2 * time.Second
		c.WriteTimeout = 3 * time.Second
		c.IdleTimeout = 4 * time.Second
	})})
	got := []time.Duration{s.http.ReadHeaderTimeout, s.http.ReadTimeout, s.http.WriteTimeout, s.http.IdleTimeout}
	if want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("timeouts = %v, want %v", got, want)
	}
}

// A slow client is cut off after READ_HEADER_TIMEOUT: proof the value
// reaches the listening server, not just the struct.
func TestReadHeaderTimeoutApplies(t *testing.T) {
	s, _ := newTestServer(t, Options{Config: testConfig(func(c *config.Config) {
		c.ReadHeaderTimeout = 100 * time.Millisecond
	})})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, _ := startServe(t, s, ctx)

	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", base[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(conn) // returns once the server closes the connection
	if err != nil {
		t.Fatalf("read: %v (the server kept the half-sent request open)", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("connection closed after %s, want about 100ms", elapsed)
	}
}
