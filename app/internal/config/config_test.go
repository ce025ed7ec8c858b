package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) LookupFunc {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestLoadDefaults(t *testing.T) {
	cfg, err := Load(env(nil))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	host, _ := os.Hostname()
	want := Config{
		Port:            8080,
		BindAddr:        "0.0.0.0",
		TrustedProxies:  nil,
		ShutdownTimeout: 10 * time.Second,
		ShutdownDelay:   0,
		StartupDelay:    0,
		GinMode:         "release",
		InstanceID:      host + ":8080",
		MetricsPath:     "/metrics",

		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v\nwant %+v", cfg, want)
	}
	if got := cfg.Addr(); got != "0.0.0.0:8080" {
		t.Errorf("Addr() = %q", got)
	}
}

func TestLoadAllSet(t *testing.T) {
	cfg, err := Load(env(map[string]string{
		"PORT":             "18080",
		"BIND_ADDR":        "127.0.0.1",
		"TRUSTED_PROXIES":  " 10.0.0.0/8, 192.168.1.7 ,, ::1, 172.16.5.4/12",
		"SHUTDOWN_TIMEOUT": "30s",
		"SHUTDOWN_DELAY":   "5s",
		"STARTUP_DELAY":    "1500ms",
		"GIN_MODE":         "debug",
		"INSTANCE_ID":      "blue-1",
		"METRICS_PATH":     "/internal/metrics",

		"READ_HEADER_TIMEOUT": "2s",
		"READ_TIMEOUT":        "2s",
		"WRITE_TIMEOUT":       "1m",
		"IDLE_TIMEOUT":        "75s",
	}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Config{
		Port:            18080,
		BindAddr:        "127.0.0.1",
		TrustedProxies:  []string{"10.0.0.0/8", "192.168.1.7", "::1", "172.16.0.0/12"},
		ShutdownTimeout: 30 * time.Second,
		ShutdownDelay:   5 * time.Second,
		StartupDelay:    1500 * time.Millisecond,
		GinMode:         "debug",
		InstanceID:      "blue-1",
		MetricsPath:     "/internal/metrics",

		ReadHeaderTimeout: 2 * time.Second,
		ReadTimeout:       2 * time.Second,
		WriteTimeout:      time.Minute,
		IdleTimeout:       75 * time.Second,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v\nwant %+v", cfg, want)
	}
}

func TestLoadInstanceDefaultUsesPort(t *testing.T) {
	cfg, err := Load(env(map[string]string{"PORT": "9999"}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(cfg.InstanceID, ":9999") {
		t.Errorf("InstanceID = %q, want hostname:9999", cfg.InstanceID)
	}
}

func TestLoadIPv6Bind(t *testing.T) {
	cfg, err := Load(env(map[string]string{"BIND_ADDR": "::", "PORT": "81"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Addr(); got != "[::]:81" {
		t.Errorf("Addr() = %q", got)
	}
}

func TestLoadEmptyValuesMeanDefault(t *testing.T) {
	cfg, err := Load(env(map[string]string{"PORT": "", "TRUSTED_PROXIES": " ", "GIN_MODE": ""}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Port != 8080 || cfg.TrustedProxies != nil || cfg.GinMode != "release" {
		t.Errorf("unexpected %+v", cfg)
	}
}

func TestLoadErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		key, value string
	}{
		{"PORT", "abc"},
		{"PORT", "0"},
		{"PORT", "65536"},
		{"PORT", "-1"},
		{"BIND_ADDR", "example.com"},
		{"BIND_ADDR", "fe80::1%eth0"},
		{"TRUSTED_PROXIES", "10.0.0.0/33"},
		{"TRUSTED_PROXIES", "10.0.0.1,not-an-ip"},
		{"SHUTDOWN_TIMEOUT", "10"},
		{"SHUTDOWN_TIMEOUT", "0s"},
		{"SHUTDOWN_TIMEOUT", "-1s"},
		{"SHUTDOWN_DELAY", "soon"},
		{"SHUTDOWN_DELAY", "-5s"},
		{"STARTUP_DELAY", "1 hour"},
		{"GIN_MODE", "production"},
		{"READ_HEADER_TIMEOUT", "0s"},
		{"READ_HEADER_TIMEOUT", "16s"}, // above the default READ_TIMEOUT
		{"READ_TIMEOUT", "-1s"},
		{"READ_TIMEOUT", "fast"},
		{"READ_TIMEOUT", "4s"}, // below the default READ_HEADER_TIMEOUT
		{"WRITE_TIMEOUT", "0"},
		{"WRITE_TIMEOUT", "30"},
		{"IDLE_TIMEOUT", "0s"},
		{"IDLE_TIMEOUT", "-60s"},
		{"METRICS_PATH", "metrics"},
		{"METRICS_PATH", "/"},
		{"METRICS_PATH", "/metrics/"},
		{"METRICS_PATH", "/a//b"},
		{"METRICS_PATH", "/../metrics"},
		{"METRICS_PATH", "/:name"},
		{"METRICS_PATH", "/m/*rest"},
		{"METRICS_PATH", "/metrics?x=1"},
		{"METRICS_PATH", "/healthz"},
		{"METRICS_PATH", "/whoami"},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			_, err := Load(env(map[string]string{tt.key: tt.value}))
			if err == nil {
				t.Fatal("expected an error")
			}
			if !strings.HasPrefix(err.Error(), tt.key+": ") {
				t.Errorf("error %q does not start with %q", err, tt.key+": ")
			}
		})
	}
}

func TestLoadEmptyMetricsPathDisablesMetrics(t *testing.T) {
	for _, v := range []string{"", "  "} {
		cfg, err := Load(env(map[string]string{"METRICS_PATH": v}))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.MetricsPath != "" {
			t.Errorf("METRICS_PATH=%q: MetricsPath = %q, want disabled", v, cfg.MetricsPath)
		}
	}
}

func TestLoadTimeoutOrder(t *testing.T) {
	// Equal is allowed: the whole request may be read within the header
	// deadline.
	if _, err := Load(env(map[string]string{"READ_HEADER_TIMEOUT": "3s", "READ_TIMEOUT": "3s"})); err != nil {
		t.Errorf("equal timeouts: %v", err)
	}
	_, err := Load(env(map[string]string{"READ_HEADER_TIMEOUT": "10s", "READ_TIMEOUT": "5s"}))
	if err == nil || err.Error() != "READ_HEADER_TIMEOUT: 10s must not exceed READ_TIMEOUT (5s)" {
		t.Errorf("err = %v", err)
	}
	// A malformed value is reported once, not again as an ordering error.
	_, err = Load(env(map[string]string{"READ_HEADER_TIMEOUT": "x", "READ_TIMEOUT": "1s"}))
	if err == nil || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("err = %v, want one line", err)
	}
}

func TestLoadReportsEveryError(t *testing.T) {
	_, err := Load(env(map[string]string{
		"PORT": "x", "STARTUP_DELAY": "y", "WRITE_TIMEOUT": "0s", "IDLE_TIMEOUT": "z", "METRICS_PATH": "m",
	}))
	if err == nil {
		t.Fatal("expected an error")
	}
	for _, key := range []string{"PORT", "STARTUP_DELAY", "WRITE_TIMEOUT", "IDLE_TIMEOUT", "METRICS_PATH"} {
		if !strings.Contains(err.Error(), key+":") {
			t.Errorf("error %q does not mention %s", err, key)
		}
	}
}

func TestTrustsEveryone(t *testing.T) {
	for proxies, want := range map[string]bool{
		"10.0.0.0/8":           false,
		"10.0.0.0/8,0.0.0.0/0": true,
		"::/0":                 true,
		"127.0.0.1":            false,
	} {
		cfg, err := Load(env(map[string]string{"TRUSTED_PROXIES": proxies}))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.TrustsEveryone(); got != want {
			t.Errorf("TrustsEveryone(%q) = %v, want %v", proxies, got, want)
		}
	}
}
