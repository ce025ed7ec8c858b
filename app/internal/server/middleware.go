package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/gin-gonic/gin"
)

// HeaderRequestID carries the request id in both directions.
const HeaderRequestID = "X-Request-ID"

const (
	ctxKeyRequestID  = "request_id"
	maxRequestIDSize = 128
)

// RequestID returns the request id assigned by the access log middleware.
func RequestID(c *gin.Context) string {
	return c.GetString(ctxKeyRequestID)
}

// validRequestID accepts an incoming id only if it is a short token of
// characters that are safe to echo in a header and to write to logs.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDSize {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch b := id[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case b == '-', b == '_', b == '.', b == ':', b == '+', b == '/', b == '=':
		default:
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// accessLog assigns the request id, echoes it in the response and writes one
// JSON log line per request. Only the path is logged, never the query string,
// which may carry secrets.
func accessLog(logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		id := c.GetHeader(HeaderRequestID)
		if !validRequestID(id) {
			id = newRequestID()
		}
		c.Set(ctxKeyRequestID, id)
		c.Header(HeaderRequestID, id)

		c.Next()

		size := max(c.Writer.Size(), 0)
		attrs := []slog.Attr{
			slog.String("request_id", id),
			slog.String("method", c.Request.Method),
			slog.String("path", c.Request.URL.Path),
			slog.String("route", c.FullPath()),
			slog.Int("status", c.Writer.Status()),
			slog.Float64("latency_ms", float64(time.Since(start).Microseconds())/1000),
			slog.String("client_ip", c.ClientIP()),
			slog.Int("bytes", size),
		}
		if len(c.Errors) > 0 {
			attrs = append(attrs, slog.String("error", c.Errors.String()))
		}
		logger.LogAttrs(c.Request.Context(), slog.LevelInfo, "request", attrs...)
	}
}

// recovery turns a panicking handler into a 500 and logs it as one JSON line,
// instead of gin's multi-line request dump.
func recovery(logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			rec := recover()
			if rec == nil {
				return
			}
			if err, ok := rec.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(rec) // let net/http abort the connection quietly
			}
			logger.LogAttrs(c.Request.Context(), slog.LevelError, "panic recovered",
				slog.String("request_id", RequestID(c)),
				slog.Any("panic", rec),
				slog.String("stack", string(debug.Stack())),
			)
			if !c.Writer.Written() {
				c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"error": "internal server error"})
			} else {
				c.Abort()
			}
		}()
		c.Next()
	}
}

// NewLogger returns the service's JSON logger: every line it writes, access
// log or lifecycle event, names the build that wrote it, so logs from two
// releases running side by side (canary, blue/green) can be told apart.
func NewLogger(w io.Writer, build BuildInfo) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, nil)).With(
		slog.String("service_version", build.Version),
		slog.String("commit", build.Commit),
	)
}
