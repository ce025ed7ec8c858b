package healthcheck

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func statusServer(t *testing.T, status int) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func TestMainWithURL(t *testing.T) {
	tests := []struct {
		status   int
		wantCode int
		wantErr  string
	}{
		{http.StatusOK, 0, ""},
		{http.StatusServiceUnavailable, 1, "status 503 Service Unavailable"},
		{http.StatusFound, 1, "status 302 Found"},
		{http.StatusInternalServerError, 1, "status 500"},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			ts := statusServer(t, tt.status)
			var stderr bytes.Buffer
			code := Main(context.Background(), []string{"-url", ts.URL + "/readyz"}, env(nil), &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if tt.wantErr == "" && stderr.Len() != 0 {
				t.Errorf("unexpected stderr %q", stderr.String())
			}
			if tt.wantErr != "" {
				out := stderr.String()
				if !strings.Contains(out, tt.wantErr) || strings.Count(out, "\n") != 1 {
					t.Errorf("stderr = %q, want one line containing %q", out, tt.wantErr)
				}
			}
		})
	}
}

func TestMainDefaultURLFromEnv(t *testing.T) {
	var gotPath string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
		if r.URL.Path != "/custom-ready" {
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(ts.Close)
	u, _ := url.Parse(ts.URL)

	var stderr bytes.Buffer
	code := Main(context.Background(), nil, env(map[string]string{
		"PORT":       u.Port(),
		"READY_PATH": "/custom-ready",
	}), &stderr)
	if code != 0 {
		t.Fatalf("exit code = %d, stderr %q", code, stderr.String())
	}
	if gotPath != "/custom-ready" {
		t.Errorf("probed path %q", gotPath)
	}
}

func TestDefaultURL(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{nil, "http://127.0.0.1:8080/readyz"},
		{map[string]string{"PORT": "18080"}, "http://127.0.0.1:18080/readyz"},
		{map[string]string{"BIND_ADDR": "0.0.0.0"}, "http://127.0.0.1:8080/readyz"},
		{map[string]string{"BIND_ADDR": "::"}, "http://127.0.0.1:8080/readyz"},
		{map[string]string{"BIND_ADDR": "127.0.0.1", "READY_PATH": "/r"}, "http://127.0.0.1:8080/r"},
		{map[string]string{"BIND_ADDR": "::1"}, "http://[::1]:8080/readyz"},
	}
	for _, tt := range tests {
		got, err := defaultURL(env(tt.env))
		if err != nil || got != tt.want {
			t.Errorf("defaultURL(%v) = %q, %v; want %q", tt.env, got, err, tt.want)
		}
	}
}

func TestMainConfigErrors(t *testing.T) {
	for _, m := range []map[string]string{
		{"PORT": "http"},
		{"READY_PATH": "readyz"},
	} {
		var stderr bytes.Buffer
		if code := Main(context.Background(), nil, env(m), &stderr); code != 1 {
			t.Errorf("%v: exit code %d, want 1", m, code)
		}
		for k := range m {
			if !strings.Contains(stderr.String(), k) {
				t.Errorf("%v: stderr %q does not name %s", m, stderr.String(), k)
			}
		}
	}
}

func TestMainBadFlagsAndArgs(t *testing.T) {
	for _, args := range [][]string{{"-nope"}, {"extra"}, {"-url", "ftp://x/"}, {"-url", "::"}} {
		var stderr bytes.Buffer
		if code := Main(context.Background(), args, env(nil), &stderr); code != 1 {
			t.Errorf("%v: exit code %d, want 1", args, code)
		}
	}
}

func TestProbeConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	err = Probe(context.Background(), "http://"+addr+"/readyz", time.Second)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Probe error = %v, want connection refused", err)
	}
}

func TestProbeTimeout(t *testing.T) {
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(ts.Close)
	t.Cleanup(func() { close(release) })

	start := time.Now()
	err := Probe(context.Background(), ts.URL, 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no response within 100ms") {
		t.Errorf("Probe error = %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("probe took %s", time.Since(start))
	}
}
