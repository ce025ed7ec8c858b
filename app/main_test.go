package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-deploy/hello-gin/internal/config"
	"github.com/gin-deploy/hello-gin/internal/server"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

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

func TestVersionVarDefaults(t *testing.T) {
	if version != "dev" || commit != "unknown" || buildTime != "unknown" {
		t.Errorf("defaults = %q %q %q", version, commit, buildTime)
	}
	info := buildInfo()
	if info.Version != version || info.Commit != commit || info.BuildTime != buildTime ||
		info.GoVersion != runtime.Version() {
		t.Errorf("buildInfo() = %+v", info)
	}
}

func TestRunHealthcheckSubcommand(t *testing.T) {
	for status, want := range map[int]int{http.StatusOK: 0, http.StatusServiceUnavailable: 1} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
		}))
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"healthcheck", "-url", ts.URL + "/readyz"}, env(nil), &stdout, &stderr)
		ts.Close()
		if code != want {
			t.Errorf("status %d: exit %d, want %d (stderr %q)", status, code, want, stderr.String())
		}
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), nil, env(map[string]string{"PORT": "99999", "SHUTDOWN_DELAY": "x"}), &stdout, &stderr)
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	for _, want := range []string{"invalid configuration", "PORT:", "SHUTDOWN_DELAY:"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q lacks %q", stderr.String(), want)
		}
	}
}

func TestRunRejectsUnknownArgument(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"serve"}, env(nil), &stdout, &stderr); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
}

func TestRunServesAndStopsCleanly(t *testing.T) {
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := &syncBuffer{}
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, nil, env(map[string]string{
			"PORT": strconv.Itoa(port), "BIND_ADDR": "127.0.0.1", "GIN_MODE": "test", "INSTANCE_ID": "run-test",
			"READ_HEADER_TIMEOUT": "2s", "READ_TIMEOUT": "3s", "WRITE_TIMEOUT": "4s", "IDLE_TIMEOUT": "75s",
		}), stdout, &stderr)
	}()

	url := "http://127.0.0.1:" + strconv.Itoa(port)
	waitReady(t, url+"/readyz", done)
	resp, err := http.Get(url + "/whoami")
	if err != nil {
		t.Fatal(err)
	}
	var who map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&who)
	resp.Body.Close()
	if who["instance"] != "run-test" || who["clientIP"] != "127.0.0.1" {
		t.Errorf("whoami = %v", who)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d, stderr %q", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if !strings.Contains(stdout.String(), `"msg":"shutdown complete"`) {
		t.Errorf("logs: %s", stdout.String())
	}

	// Every line, lifecycle or request, names the build; the start line
	// shows the effective timeouts.
	var starting map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(stdout.String()), "\n") {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if l["service_version"] != version || l["commit"] != commit {
			t.Errorf("log line without service_version/commit: %s", line)
		}
		if l["msg"] == "starting" {
			starting = l
		}
	}
	for k, want := range map[string]string{
		"read_header_timeout": "2s", "read_timeout": "3s", "write_timeout": "4s", "idle_timeout": "1m15s",
		"metrics_path": "/metrics",
	} {
		if starting[k] != want {
			t.Errorf("starting log %s = %v, want %q", k, starting[k], want)
		}
	}
}

func TestRunListsEveryInvalidTimeout(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), nil, env(map[string]string{
		"READ_HEADER_TIMEOUT": "0s", "READ_TIMEOUT": "soon", "WRITE_TIMEOUT": "-1s", "IDLE_TIMEOUT": "30",
	}), &stdout, &stderr)
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	for _, key := range []string{"READ_HEADER_TIMEOUT:", "READ_TIMEOUT:", "WRITE_TIMEOUT:", "IDLE_TIMEOUT:"} {
		if !strings.Contains(stderr.String(), "  "+key) {
			t.Errorf("stderr %q lacks %q", stderr.String(), key)
		}
	}
}

func waitReady(t *testing.T, url string, exited <-chan int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case code := <-exited:
			t.Fatalf("server exited early with %d", code)
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never became ready", url)
}

// TestBinary builds the real binary with the release ldflags and checks the
// -X variable names, gin mode guarding, signals and the healthcheck
// subcommand end to end.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "app")
	ldflags := "-s -w -X main.version=v9.8.7 -X main.commit=c0ffee -X main.buildTime=2025-06-01T12:00:00Z"
	build := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	t.Run("invalid GIN_MODE is a config error, not a gin panic", func(t *testing.T) {
		cmd := exec.Command(bin)
		cmd.Env = []string{"GIN_MODE=production", "PORT=1"}
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Fatalf("err = %v, output %s", err, out)
		}
		if !strings.Contains(string(out), `GIN_MODE: "production"`) || strings.Contains(string(out), "panic") {
			t.Errorf("output: %s", out)
		}
	})

	t.Run("serve, healthcheck, SIGTERM", func(t *testing.T) {
		port := strconv.Itoa(freePort(t))
		baseEnv := []string{"PORT=" + port, "BIND_ADDR=127.0.0.1", "SHUTDOWN_DELAY=300ms"}
		stdout := &syncBuffer{}
		cmd := exec.Command(bin)
		cmd.Env = baseEnv
		cmd.Stdout = stdout
		cmd.Stderr = stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan int, 1)
		go func() {
			_ = cmd.Wait()
			exited <- cmd.ProcessState.ExitCode()
		}()
		t.Cleanup(func() { _ = cmd.Process.Kill() })

		url := "http://127.0.0.1:" + port
		waitReady(t, url+"/readyz", exited)

		resp, err := http.Get(url + "/version")
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if v["version"] != "v9.8.7" || v["commit"] != "c0ffee" || v["buildTime"] != "2025-06-01T12:00:00Z" ||
			v["goVersion"] != runtime.Version() {
			t.Errorf("/version = %v", v)
		}

		hc := exec.Command(bin, "healthcheck")
		hc.Env = baseEnv
		if out, err := hc.CombinedOutput(); err != nil {
			t.Errorf("healthcheck against a ready server: %v %s", err, out)
		}

		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// During SHUTDOWN_DELAY the healthcheck must fail.
		deadline := time.Now().Add(250 * time.Millisecond)
		failed := false
		for !failed && time.Now().Before(deadline) {
			hc := exec.Command(bin, "healthcheck")
			hc.Env = baseEnv
			failed = hc.Run() != nil
		}
		if !failed {
			t.Error("healthcheck still passing after SIGTERM")
		}

		select {
		case code := <-exited:
			if code != 0 {
				t.Errorf("exit code %d after SIGTERM; output:\n%s", code, stdout.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("process did not exit after SIGTERM")
		}
		logs := stdout.String()
		for _, want := range []string{`"msg":"starting"`, `"service_version":"v9.8.7"`, `"commit":"c0ffee"`,
			`"msg":"shutdown complete"`} {
			if !strings.Contains(logs, want) {
				t.Errorf("logs lack %s:\n%s", want, logs)
			}
		}
	})
}

// TestSIGTERMDrainsInFlightRequest sends a real SIGTERM to the test process
// while a request is inside a (test-only) slow handler: the request must
// complete, readiness must fail meanwhile, and serve must return 0.
func TestSIGTERMDrainsInFlightRequest(t *testing.T) {
	port := freePort(t)
	cfg, err := config.Load(env(map[string]string{
		"PORT":             strconv.Itoa(port),
		"BIND_ADDR":        "127.0.0.1",
		"SHUTDOWN_DELAY":   "200ms",
		"SHUTDOWN_TIMEOUT": "5s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	logs := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- serve(context.Background(), server.Options{
			Config: cfg,
			Build:  buildInfo(),
			Logger: slog.New(slog.NewJSONHandler(logs, nil)),
			ExtraRoutes: func(r gin.IRoutes) {
				r.GET("/test/slow", func(c *gin.Context) {
					started <- struct{}{}
					<-release
					c.String(http.StatusOK, "finished")
				})
			},
		})
	}()
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	waitReady(t, base+"/readyz", done)

	type result struct {
		status int
		body   string
		err    error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := http.Get(base + "/test/slow")
		if err != nil {
			slow <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		slow <- result{resp.StatusCode, string(b), err}
	}()
	<-started

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// Readiness fails while the in-flight request is still running.
	deadline := time.Now().Add(2 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("readyz did not turn 503 after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}

	time.Sleep(300 * time.Millisecond) // past SHUTDOWN_DELAY: listener closed, drain waiting
	select {
	case code := <-done:
		t.Fatalf("serve returned %d before the in-flight request finished", code)
	default:
	}
	close(release)

	if r := <-slow; r.err != nil || r.status != http.StatusOK || r.body != "finished" {
		t.Errorf("in-flight request: %+v", r)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve = %d, want 0; logs:\n%s", code, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return")
	}
	if !strings.Contains(logs.String(), `"msg":"shutdown complete"`) {
		t.Errorf("logs:\n%s", logs.String())
	}
}

// startRun runs the service through run with vars on a free loopback port
// until the test ends, and returns its base URL and its log output.
func startRun(t *testing.T, vars map[string]string) (string, *syncBuffer) {
	t.Helper()
	port := strconv.Itoa(freePort(t))
	all := map[string]string{"PORT": port, "BIND_ADDR": "127.0.0.1", "GIN_MODE": "test"}
	for k, v := range vars {
		all[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	stdout := &syncBuffer{}
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, nil, env(all), stdout, &stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("run exited %d; stderr %s", code, stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Error("run did not stop")
		}
	})
	base := "http://127.0.0.1:" + port
	waitReady(t, base+"/readyz", done)
	return base, stdout
}

// timedGet returns the status of GET url and how long it took.
func timedGet(t *testing.T, url string) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}
