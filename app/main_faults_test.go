//go:build faults

package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A faulty variant passes liveness and readiness and reports its version,
// but fails real traffic; the failures show in the logs and the metrics.
func TestFaultsBuildFailsTrafficButNotProbes(t *testing.T) {
	base, logs := startRun(t, map[string]string{"FAULT_ERROR_RATE": "1", "FAULT_LATENCY": "50ms"})
	for _, p := range []string{"/healthz", "/readyz", "/version", "/metrics"} {
		if code, took := timedGet(t, base+p); code != http.StatusOK || took >= 50*time.Millisecond {
			t.Errorf("%s: %d after %s, want 200 without the injected latency", p, code, took)
		}
	}
	for range 3 {
		if code, took := timedGet(t, base+"/whoami"); code != http.StatusInternalServerError || took < 50*time.Millisecond {
			t.Errorf("/whoami: %d after %s, want 500 after >= 50ms", code, took)
		}
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if want := `hello_gin_http_requests_total{method="GET",route="/whoami",status="500"} 3`; !strings.Contains(body.String(), want) {
		t.Errorf("metrics lack %s:\n%s", want, body.String())
	}
	for _, want := range []string{`"msg":"fault injection active:`, `"error":"Error #01: injected fault`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
}

func TestFaultsBuildHonoursTheErrorRate(t *testing.T) {
	base, _ := startRun(t, map[string]string{"FAULT_ERROR_RATE": "0.3"})
	const n = 2000
	failed := 0
	for range n {
		code, _ := timedGet(t, base+"/whoami")
		switch code {
		case http.StatusInternalServerError:
			failed++
		case http.StatusOK:
		default:
			t.Fatalf("status %d", code)
		}
	}
	// The standard deviation of the share is about 0.01; 0.05 is 5 of them.
	if share := float64(failed) / n; share < 0.25 || share > 0.35 {
		t.Errorf("%d of %d failed (%.3f), want about 0.3", failed, n, share)
	}
}

func TestFaultsBuildRejectsInvalidFaultVariables(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), nil, env(map[string]string{
		"FAULT_ERROR_RATE": "1.5", "FAULT_LATENCY": "slow", "PORT": "0",
	}), &stdout, &stderr)
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	for _, key := range []string{"PORT:", "FAULT_ERROR_RATE:", "FAULT_LATENCY:"} {
		if !strings.Contains(stderr.String(), "  "+key) {
			t.Errorf("stderr %q lacks %s", stderr.String(), key)
		}
	}
}
