// Package config loads and validates the service configuration from
// environment variables.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-deploy/hello-gin/internal/ginmode"
)

// Defaults for every setting.
const (
	DefaultPort            = 8080
	DefaultBindAddr        = "0.0.0.0"
	DefaultShutdownTimeout = 10 * time.Second
	DefaultShutdownDelay   = time.Duration(0)
	DefaultStartupDelay    = time.Duration(0)
	DefaultGinMode         = "release"
	DefaultReadyPath       = "/readyz"
	DefaultMetricsPath     = "/metrics"

	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 15 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
)

// ReservedPaths are the service's own routes; METRICS_PATH may not take one.
var ReservedPaths = []string{"/healthz", "/readyz", "/version", "/whoami"}

// Config is the validated service configuration.
type Config struct {
	// Port is the TCP port to listen on (PORT).
	Port int
	// BindAddr is the IP address to listen on (BIND_ADDR).
	BindAddr string
	// TrustedProxies lists the proxy IPs/CIDRs whose X-Forwarded-For and
	// X-Real-IP headers are believed (TRUSTED_PROXIES). Nil trusts none.
	TrustedProxies []string
	// ShutdownTimeout bounds how long in-flight requests may drain
	// (SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration
	// ShutdownDelay is the pause between failing readiness and closing the
	// listener, so load balancers stop routing first (SHUTDOWN_DELAY).
	ShutdownDelay time.Duration
	// StartupDelay keeps readiness failing for this long after start
	// (STARTUP_DELAY).
	StartupDelay time.Duration
	// GinMode is gin's mode: debug, release or test (GIN_MODE).
	GinMode string
	// InstanceID identifies this process in /whoami (INSTANCE_ID).
	InstanceID string
	// MetricsPath serves Prometheus metrics; empty disables them
	// (METRICS_PATH).
	MetricsPath string

	// HTTP server timeouts (READ_HEADER_TIMEOUT, READ_TIMEOUT,
	// WRITE_TIMEOUT, IDLE_TIMEOUT). The deploy program keeps IDLE_TIMEOUT
	// above its load balancer's idle timeout, so the balancer never reuses
	// a connection the service is closing, and sizes drain windows by
	// WRITE_TIMEOUT.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
}

// Addr returns the host:port the server listens on.
func (c Config) Addr() string {
	return net.JoinHostPort(c.BindAddr, strconv.Itoa(c.Port))
}

// TrustsEveryone reports whether the trusted proxy list covers every
// address, which makes X-Forwarded-For trivially spoofable.
func (c Config) TrustsEveryone() bool {
	for _, p := range c.TrustedProxies {
		if pfx, err := netip.ParsePrefix(p); err == nil && pfx.Bits() == 0 {
			return true
		}
	}
	return false
}

// LookupFunc has the signature of os.LookupEnv.
type LookupFunc func(key string) (string, bool)

// Load reads the configuration through lookup (usually os.LookupEnv) and
// validates it. The returned error lists every invalid variable by name.
func Load(lookup LookupFunc) (Config, error) {
	var errs []error
	get := func(key string) (string, bool) {
		v, ok := lookup(key)
		v = strings.TrimSpace(v)
		return v, ok && v != ""
	}

	cfg := Config{
		Port:            DefaultPort,
		BindAddr:        DefaultBindAddr,
		ShutdownTimeout: DefaultShutdownTimeout,
		ShutdownDelay:   DefaultShutdownDelay,
		StartupDelay:    DefaultStartupDelay,
		GinMode:         DefaultGinMode,
		MetricsPath:     DefaultMetricsPath,

		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		ReadTimeout:       DefaultReadTimeout,
		WriteTimeout:      DefaultWriteTimeout,
		IdleTimeout:       DefaultIdleTimeout,
	}

	if v, ok := get("PORT"); ok {
		p, err := ParsePort(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("PORT: %w", err))
		} else {
			cfg.Port = p
		}
	}

	if v, ok := get("BIND_ADDR"); ok {
		addr, err := netip.ParseAddr(v)
		if err != nil || addr.Zone() != "" {
			errs = append(errs, fmt.Errorf("BIND_ADDR: %q is not an IP address (e.g. 0.0.0.0 or 127.0.0.1)", v))
		} else {
			cfg.BindAddr = addr.String()
		}
	}

	if v, ok := get("TRUSTED_PROXIES"); ok {
		proxies, err := parseProxies(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("TRUSTED_PROXIES: %w", err))
		} else {
			cfg.TrustedProxies = proxies
		}
	}

	durations := []struct {
		name     string
		dst      *time.Duration
		positive bool
	}{
		{"SHUTDOWN_TIMEOUT", &cfg.ShutdownTimeout, true},
		{"SHUTDOWN_DELAY", &cfg.ShutdownDelay, false},
		{"STARTUP_DELAY", &cfg.StartupDelay, false},
		{"READ_HEADER_TIMEOUT", &cfg.ReadHeaderTimeout, true},
		{"READ_TIMEOUT", &cfg.ReadTimeout, true},
		{"WRITE_TIMEOUT", &cfg.WriteTimeout, true},
		{"IDLE_TIMEOUT", &cfg.IdleTimeout, true},
	}
	bad := map[string]bool{}
	for _, d := range durations {
		v, ok := get(d.name)
		if !ok {
			continue
		}
		dur, err := time.ParseDuration(v)
		bad[d.name] = err != nil || dur < 0 || (d.positive && dur == 0)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %q is not a Go duration (e.g. 500ms, 10s, 1m)", d.name, v))
		case d.positive && dur <= 0:
			errs = append(errs, fmt.Errorf("%s: must be greater than 0, got %q", d.name, v))
		case dur < 0:
			errs = append(errs, fmt.Errorf("%s: must not be negative, got %q", d.name, v))
		default:
			*d.dst = dur
		}
	}

	// Checked only when both values are valid, so one typo is one error;
	// the message names the variable the operator set.
	if !bad["READ_HEADER_TIMEOUT"] && !bad["READ_TIMEOUT"] && cfg.ReadHeaderTimeout > cfg.ReadTimeout {
		if _, headerSet := get("READ_HEADER_TIMEOUT"); headerSet {
			errs = append(errs, fmt.Errorf("READ_HEADER_TIMEOUT: %s must not exceed READ_TIMEOUT (%s)",
				cfg.ReadHeaderTimeout, cfg.ReadTimeout))
		} else {
			errs = append(errs, fmt.Errorf("READ_TIMEOUT: %s must not be less than READ_HEADER_TIMEOUT (%s)",
				cfg.ReadTimeout, cfg.ReadHeaderTimeout))
		}
	}

	// Set but empty disables metrics, unlike the other variables, where
	// empty means unset.
	if v, ok := lookup("METRICS_PATH"); ok {
		p, err := parseMetricsPath(strings.TrimSpace(v))
		if err != nil {
			errs = append(errs, fmt.Errorf("METRICS_PATH: %w", err))
		} else {
			cfg.MetricsPath = p
		}
	}

	if v, ok := get("GIN_MODE"); ok {
		if ginmode.Valid(v) {
			cfg.GinMode = v
		} else {
			errs = append(errs, fmt.Errorf("GIN_MODE: %q is not one of debug, release, test", v))
		}
	}

	if v, ok := get("INSTANCE_ID"); ok {
		cfg.InstanceID = v
	} else {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "unknown"
		}
		cfg.InstanceID = host + ":" + strconv.Itoa(cfg.Port)
	}

	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return cfg, nil
}

// ParsePort parses a TCP port number in the range 1..65535.
func ParsePort(v string) (int, error) {
	p, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("%q is not a port number in 1..65535", v)
	}
	return p, nil
}

// parseMetricsPath accepts "" (disabled) or an absolute path of plain
// segments. Gin's ':' and '*' wildcards, queries and the service's own
// routes are refused, since any of them would change what gets routed.
func parseMetricsPath(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if !strings.HasPrefix(v, "/") || v == "/" || strings.HasSuffix(v, "/") {
		return "", fmt.Errorf("%q must be a path such as /metrics (leading '/', no trailing '/'), or empty to disable metrics", v)
	}
	for seg := range strings.SplitSeq(v[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("%q has an empty, '.' or '..' segment", v)
		}
		for i := 0; i < len(seg); i++ {
			switch b := seg[i]; {
			case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
			case b == '-', b == '_', b == '.', b == '~':
			default:
				return "", fmt.Errorf("%q may contain only letters, digits, '-', '_', '.', '~' and '/'", v)
			}
		}
	}
	if slices.Contains(ReservedPaths, v) {
		return "", fmt.Errorf("%q is already a route of the service", v)
	}
	return v, nil
}

// parseProxies parses a comma-separated list of IP addresses and CIDRs.
// Empty items are ignored; an empty list means "trust no proxy" (nil).
func parseProxies(v string) ([]string, error) {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if strings.Contains(item, "/") {
			pfx, err := netip.ParsePrefix(item)
			if err != nil {
				return nil, fmt.Errorf("%q is not a valid CIDR", item)
			}
			out = append(out, pfx.Masked().String())
			continue
		}
		addr, err := netip.ParseAddr(item)
		if err != nil || addr.Zone() != "" {
			return nil, fmt.Errorf("%q is not a valid IP address or CIDR", item)
		}
		out = append(out, addr.String())
	}
	return out, nil
}
