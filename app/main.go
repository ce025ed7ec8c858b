// Command hello-gin is the reference Gin web service deployed by gin-deploy.
//
// Usage:
//
//	app               run the HTTP server (configured from the environment)
//	app healthcheck   probe the local readiness endpoint; exit 0 if ready
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/gin-gonic/gin"

	"github.com/gin-deploy/hello-gin/internal/config"
	"github.com/gin-deploy/hello-gin/internal/faults"
	"github.com/gin-deploy/hello-gin/internal/ginmode"
	"github.com/gin-deploy/hello-gin/internal/healthcheck"
	"github.com/gin-deploy/hello-gin/internal/server"
)

// Set at build time with
// -ldflags "-X main.version=... -X main.commit=... -X main.buildTime=...".
var (
	version   = "dev"
	commit    = "unknown"
	buildTime = "unknown"
)

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

func main() {
	// ginmode.Lookup reports GIN_MODE as it was at start, even if it was
	// removed from the environment to keep gin from panicking on it.
	os.Exit(run(context.Background(), os.Args[1:], ginmode.Lookup(os.LookupEnv), os.Stdout, os.Stderr))
}

func buildInfo() server.BuildInfo {
	return server.BuildInfo{
		Version:   version,
		Commit:    commit,
		BuildTime: buildTime,
		GoVersion: runtime.Version(),
	}
}

// run is main without the process globals, so tests can drive it.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if args[0] == "healthcheck" {
			return healthcheck.Main(ctx, args[1:], lookup, stderr)
		}
		fmt.Fprintf(stderr, "unknown argument %q\nusage: app [healthcheck [-url URL]]\n", args[0])
		return exitConfig
	}

	cfg, cfgErr := config.Load(lookup)
	faultSettings, faultErr := faults.Load(lookup)
	if err := errors.Join(cfgErr, faultErr); err != nil {
		fmt.Fprintln(stderr, "invalid configuration:")
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintln(stderr, "  "+line)
		}
		return exitConfig
	}
	gin.SetMode(cfg.GinMode)

	info := buildInfo()
	logger := server.NewLogger(stdout, info)
	if faultSettings.Active() {
		logger.Warn("fault injection active: this build fails or slows requests on purpose",
			"fault_error_rate", faultSettings.ErrorRate,
			"fault_latency", faultSettings.Latency.String(),
		)
	}
	if !faults.Enabled {
		for _, key := range []string{faults.EnvErrorRate, faults.EnvLatency} {
			if v, ok := lookup(key); ok && strings.TrimSpace(v) != "" {
				logger.Warn(key + " is ignored: this build has no fault injection (it needs -tags faults)")
			}
		}
	}
	return serve(ctx, server.Options{
		Config: cfg,
		Build:  info,
		Logger: logger,
		Faults: faults.Middleware(faultSettings),
	})
}

// serve runs the HTTP server until SIGTERM or SIGINT (or ctx cancellation),
// then drains it. It returns 0 after a clean drain.
func serve(ctx context.Context, opts server.Options) int {
	cfg, logger, info := opts.Config, opts.Logger, opts.Build
	// The version and commit are on every line (server.NewLogger).
	logger.Info("starting",
		"build_time", info.BuildTime,
		"go_version", info.GoVersion,
		"gin_mode", gin.Mode(),
		"addr", cfg.Addr(),
		"instance", cfg.InstanceID,
		"trusted_proxies", cfg.TrustedProxies,
		"metrics_path", cfg.MetricsPath,
		"read_header_timeout", cfg.ReadHeaderTimeout.String(),
		"read_timeout", cfg.ReadTimeout.String(),
		"write_timeout", cfg.WriteTimeout.String(),
		"idle_timeout", cfg.IdleTimeout.String(),
	)
	if cfg.TrustsEveryone() {
		logger.Warn("TRUSTED_PROXIES trusts every address; X-Forwarded-For can be forged by any client")
	}

	srv, err := server.New(opts)
	if err != nil {
		logger.Error("startup failed", "error", err.Error())
		return exitFail
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		// After the first signal, restore default handling so a second
		// one terminates the process immediately.
		<-ctx.Done()
		stop()
	}()

	if err := srv.ListenAndServe(ctx); err != nil {
		logger.Error("server stopped with error", "error", err.Error())
		return exitFail
	}
	return exitOK
}
