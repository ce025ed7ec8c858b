// Package server builds the gin router and runs the HTTP server with
// readiness tracking and graceful shutdown.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-deploy/hello-gin/internal/config"
)

const maxHeaderBytes = 64 << 10

// BuildInfo is reported by GET /version.
type BuildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	BuildTime string `json:"buildTime"`
	GoVersion string `json:"goVersion"`
}

// Options configures a Server.
type Options struct {
	Config config.Config
	Build  BuildInfo
	// Logger receives access logs and lifecycle events. Nil discards them.
	// NewLogger makes one whose every line names the build.
	Logger *slog.Logger
	// Faults, if set, runs for every request outside the operational
	// routes, inside the access log and the metrics so what it does is
	// observed like real failures. Only fault-injection builds set it.
	Faults gin.HandlerFunc
	// ExtraRoutes, if set, is called after the standard routes are
	// registered. Production leaves it nil; tests use it to add routes
	// (for example a deliberately slow one to exercise draining).
	ExtraRoutes func(r gin.IRoutes)
	// Now is the clock used for the startup delay. Nil means time.Now.
	Now func() time.Time
}

// Server is the HTTP service.
type Server struct {
	cfg      config.Config
	log      *slog.Logger
	engine   *gin.Engine
	http     *http.Server
	now      func() time.Time
	readyAt  time.Time
	metrics  *metrics
	draining atomic.Bool
}

// New builds the router and the http.Server. It does not listen yet.
func New(opts Options) (*Server, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	s := &Server{
		cfg:     opts.Config,
		log:     logger,
		now:     now,
		readyAt: now().Add(opts.Config.StartupDelay),
	}

	engine := gin.New()
	// Nil means "trust no proxy": ClientIP() is then always the TCP peer
	// and a forged X-Forwarded-For is ignored.
	if err := engine.SetTrustedProxies(opts.Config.TrustedProxies); err != nil {
		return nil, fmt.Errorf("trusted proxies: %w", err)
	}
	ops := s.operationalRoutes()
	if opts.Config.MetricsPath != "" {
		if slices.Contains(config.ReservedPaths, opts.Config.MetricsPath) {
			return nil, fmt.Errorf("metrics path %q is already a route", opts.Config.MetricsPath)
		}
		s.metrics = newMetrics(opts.Build)
	}
	engine.Use(accessLog(logger))
	if s.metrics != nil {
		engine.Use(s.metrics.middleware(ops))
	}
	engine.Use(recovery(logger))
	if opts.Faults != nil {
		faults := opts.Faults
		engine.Use(func(c *gin.Context) {
			if !ops[c.FullPath()] {
				faults(c)
			}
		})
	}
	s.routes(engine, opts.Build)
	if opts.ExtraRoutes != nil {
		opts.ExtraRoutes(engine)
	}
	s.engine = engine

	s.http = &http.Server{
		Addr:              opts.Config.Addr(),
		Handler:           engine,
		ReadHeaderTimeout: opts.Config.ReadHeaderTimeout,
		ReadTimeout:       opts.Config.ReadTimeout,
		WriteTimeout:      opts.Config.WriteTimeout,
		IdleTimeout:       opts.Config.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Handler returns the router, for in-process tests.
func (s *Server) Handler() http.Handler { return s.engine }

// Ready reports whether the service should receive traffic: the startup
// delay has elapsed and no shutdown has begun.
func (s *Server) Ready() bool {
	return !s.draining.Load() && !s.now().Before(s.readyAt)
}

// ListenAndServe listens on the configured address and calls Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.http.Addr)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// Serve serves HTTP on ln until ctx is cancelled, then shuts down
// gracefully:
//
//  1. readiness turns 503 immediately;
//  2. it waits ShutdownDelay while still serving, so load balancers notice;
//  3. it closes the listener and waits up to ShutdownTimeout for in-flight
//     requests to finish.
//
// It returns nil after a clean drain, or an error if serving failed or the
// drain timed out (remaining connections are then closed forcibly).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.http.Serve(ln) }()

	s.log.Info("listening",
		"addr", ln.Addr().String(),
		"ready_in", s.cfg.StartupDelay.String(),
	)

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	s.draining.Store(true)
	s.log.Info("shutdown started",
		"shutdown_delay", s.cfg.ShutdownDelay.String(),
		"shutdown_timeout", s.cfg.ShutdownTimeout.String(),
	)

	if s.cfg.ShutdownDelay > 0 {
		t := time.NewTimer(s.cfg.ShutdownDelay)
		select {
		case <-t.C:
		case err := <-serveErr:
			t.Stop()
			return fmt.Errorf("serve: %w", err)
		}
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	start := s.now()
	if err := s.http.Shutdown(shutdownCtx); err != nil {
		_ = s.http.Close()
		return fmt.Errorf("drain did not finish within %s: %w", s.cfg.ShutdownTimeout, err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	s.log.Info("shutdown complete", "drain_ms", msSince(s.now, start))
	return nil
}

func msSince(now func() time.Time, start time.Time) float64 {
	return float64(now().Sub(start).Microseconds()) / 1000
}
