//go:build !faults

package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gin-deploy/hello-gin/internal/faults"
)

// A normal build must neither inject faults nor refuse to start over the
// FAULT_* variables; it only warns that they are ignored.
func TestNormalBuildIgnoresFaultVariables(t *testing.T) {
	if faults.Enabled {
		t.Fatal("the default build includes fault injection")
	}
	for name, vars := range map[string]map[string]string{
		"valid":   {"FAULT_ERROR_RATE": "1", "FAULT_LATENCY": "1h"},
		"invalid": {"FAULT_ERROR_RATE": "often", "FAULT_LATENCY": "-1s"},
	} {
		t.Run(name, func(t *testing.T) {
			base, logs := startRun(t, vars)
			for range 20 {
				code, took := timedGet(t, base+"/whoami")
				if code != http.StatusOK || took > 2*time.Second {
					t.Fatalf("/whoami: %d after %s", code, took)
				}
			}
			for _, key := range []string{"FAULT_ERROR_RATE", "FAULT_LATENCY"} {
				if !strings.Contains(logs.String(), key+" is ignored") {
					t.Errorf("no warning that %s is ignored:\n%s", key, logs.String())
				}
			}
		})
	}
}
