// Package healthcheck implements the "healthcheck" subcommand: an HTTP probe
// of the service's own readiness endpoint, for container images that have no
// shell or curl and for host deploy scripts. It uses only the standard
// library and gin-free internal packages.
package healthcheck

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-deploy/hello-gin/internal/config"
)

// DefaultTimeout bounds the whole probe.
const DefaultTimeout = 2 * time.Second

// Main runs the subcommand with args (those after "healthcheck") and returns
// the process exit code: 0 when the endpoint answers 200, 1 otherwise, with a
// one-line reason on stderr.
func Main(ctx context.Context, args []string, lookup func(string) (string, bool), stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rawURL := fs.String("url", "", "full URL to probe (default http://127.0.0.1:$PORT$READY_PATH)")
	timeout := fs.Duration("timeout", DefaultTimeout, "timeout for the whole probe")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: app healthcheck [-url URL] [-timeout 2s]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		// Docker reserves exit code 2, so every failure is 1.
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "healthcheck: unexpected argument %q\n", fs.Arg(0))
		return 1
	}

	target := *rawURL
	if target == "" {
		u, err := defaultURL(lookup)
		if err != nil {
			fmt.Fprintf(stderr, "healthcheck: %v\n", err)
			return 1
		}
		target = u
	}
	if err := Probe(ctx, target, *timeout); err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	return 0
}

// defaultURL builds http://HOST:$PORT$READY_PATH. HOST is 127.0.0.1 unless
// BIND_ADDR names a specific address, in which case the probe goes there
// (the server would not answer on loopback).
func defaultURL(lookup func(string) (string, bool)) (string, error) {
	get := func(key string) string {
		v, _ := lookup(key)
		return strings.TrimSpace(v)
	}

	port := config.DefaultPort
	if v := get("PORT"); v != "" {
		p, err := config.ParsePort(v)
		if err != nil {
			return "", fmt.Errorf("PORT: %w", err)
		}
		port = p
	}

	path := config.DefaultReadyPath
	if v := get("READY_PATH"); v != "" {
		if !strings.HasPrefix(v, "/") {
			return "", fmt.Errorf("READY_PATH: %q must start with /", v)
		}
		path = v
	}

	host := "127.0.0.1"
	if v := get("BIND_ADDR"); v != "" {
		if addr, err := netip.ParseAddr(v); err == nil && !addr.IsUnspecified() {
			host = addr.String()
		}
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + path, nil
}

// Probe sends one GET to target and returns nil only for a 200 response.
// Redirects are not followed and proxy settings from the environment are
// ignored.
func Probe(ctx context.Context, target string, timeout time.Duration) error {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid URL %q", target)
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("invalid URL %q: %v", target, err)
	}
	req.Header.Set("User-Agent", "hello-gin-healthcheck")

	client := &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("GET %s: no response within %s", target, timeout)
		}
		return fmt.Errorf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))

	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %s", target, resp.Status)
	}
	return nil
}
