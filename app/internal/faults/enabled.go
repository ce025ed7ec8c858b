//go:build faults

package faults

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Enabled reports whether this binary was built with -tags faults.
const Enabled = true

// ErrInjected is attached to the requests failed on purpose, so their
// access log lines say so.
var ErrInjected = errors.New("injected fault (FAULT_ERROR_RATE)")

// Load reads FAULT_ERROR_RATE (0..1) and FAULT_LATENCY (a Go duration >= 0).
// Empty values count as unset. The error lists every invalid variable by
// name, in the style of the service's other settings.
func Load(lookup func(string) (string, bool)) (Settings, error) {
	var s Settings
	var errs []error
	if v, ok := lookup(EnvErrorRate); ok && strings.TrimSpace(v) != "" {
		v = strings.TrimSpace(v)
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(r) || r < 0 || r > 1 {
			errs = append(errs, fmt.Errorf("%s: %q is not a number in 0..1", EnvErrorRate, v))
		} else {
			s.ErrorRate = r
		}
	}
	if v, ok := lookup(EnvLatency); ok && strings.TrimSpace(v) != "" {
		v = strings.TrimSpace(v)
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %q is not a Go duration (e.g. 500ms, 10s, 1m)", EnvLatency, v))
		case d < 0:
			errs = append(errs, fmt.Errorf("%s: must not be negative, got %q", EnvLatency, v))
		default:
			s.Latency = d
		}
	}
	if len(errs) > 0 {
		return Settings{}, errors.Join(errs...)
	}
	return s, nil
}

// Middleware delays each request by Latency, then answers ErrorRate of
// them with 500 instead of running the handler. Nil when s changes nothing.
func Middleware(s Settings) gin.HandlerFunc {
	if !s.Active() {
		return nil
	}
	return middleware(s, rand.Float64)
}

// middleware takes the random source so tests can make it deterministic.
func middleware(s Settings, random func() float64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if s.Latency > 0 {
			t := time.NewTimer(s.Latency)
			select {
			case <-t.C:
			case <-c.Request.Context().Done(): // client gone or server closing
				t.Stop()
			}
		}
		// random() is in [0, 1): rate 0 never fails, rate 1 always does.
		if random() < s.ErrorRate {
			_ = c.Error(ErrInjected)
			c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"error": "internal server error"})
		}
	}
}
