//go:build faults

package faults

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoad(t *testing.T) {
	s, err := Load(env(map[string]string{"FAULT_ERROR_RATE": " 0.25 ", "FAULT_LATENCY": "150ms"}))
	if err != nil || s != (Settings{ErrorRate: 0.25, Latency: 150 * time.Millisecond}) {
		t.Errorf("Load = %+v, %v", s, err)
	}
	s, err = Load(env(map[string]string{"FAULT_ERROR_RATE": "", "FAULT_LATENCY": " "}))
	if err != nil || s.Active() {
		t.Errorf("empty values: %+v, %v", s, err)
	}
	for _, r := range []string{"0", "1", "1e-3"} {
		if _, err := Load(env(map[string]string{"FAULT_ERROR_RATE": r})); err != nil {
			t.Errorf("FAULT_ERROR_RATE=%s: %v", r, err)
		}
	}
}

func TestLoadErrorsNameEveryVariable(t *testing.T) {
	for _, tt := range []struct{ key, value string }{
		{"FAULT_ERROR_RATE", "often"},
		{"FAULT_ERROR_RATE", "-0.1"},
		{"FAULT_ERROR_RATE", "1.01"},
		{"FAULT_ERROR_RATE", "NaN"},
		{"FAULT_ERROR_RATE", "50%"},
		{"FAULT_LATENCY", "100"},
		{"FAULT_LATENCY", "-1s"},
	} {
		_, err := Load(env(map[string]string{tt.key: tt.value}))
		if err == nil || !strings.HasPrefix(err.Error(), tt.key+": ") {
			t.Errorf("%s=%q: err = %v", tt.key, tt.value, err)
		}
	}
	_, err := Load(env(map[string]string{"FAULT_ERROR_RATE": "x", "FAULT_LATENCY": "y"}))
	if err == nil || !strings.Contains(err.Error(), "FAULT_ERROR_RATE: ") || !strings.Contains(err.Error(), "\nFAULT_LATENCY: ") {
		t.Errorf("err = %v, want both variables", err)
	}
}

func TestMiddlewareNilWhenInactive(t *testing.T) {
	if Middleware(Settings{}) != nil {
		t.Error("zero settings gave a middleware")
	}
	if Middleware(Settings{ErrorRate: 0.1}) == nil || Middleware(Settings{Latency: time.Millisecond}) == nil {
		t.Error("active settings gave no middleware")
	}
}

func serveOnce(t *testing.T, h gin.HandlerFunc, ctx context.Context) int {
	t.Helper()
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.Use(h)
	r.GET("/x", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x", nil).WithContext(ctx))
	return rec.Code
}

func TestErrorRateThreshold(t *testing.T) {
	for _, tt := range []struct {
		rate, draw float64
		want       int
	}{
		{0, 0, http.StatusOK}, // rate 0 never fails
		{0.3, 0.29, http.StatusInternalServerError},
		{0.3, 0.3, http.StatusOK},
		{1, 0.9999, http.StatusInternalServerError}, // rate 1 always fails
	} {
		h := middleware(Settings{ErrorRate: tt.rate}, func() float64 { return tt.draw })
		if got := serveOnce(t, h, context.Background()); got != tt.want {
			t.Errorf("rate %v, draw %v: %d, want %d", tt.rate, tt.draw, got, tt.want)
		}
	}
}

func TestLatency(t *testing.T) {
	h := Middleware(Settings{Latency: 80 * time.Millisecond})
	start := time.Now()
	if code := serveOnce(t, h, context.Background()); code != http.StatusOK {
		t.Errorf("status %d", code)
	}
	if took := time.Since(start); took < 80*time.Millisecond {
		t.Errorf("took %s, want >= 80ms", took)
	}

	// A gone client does not keep a goroutine asleep for the whole delay.
	h = Middleware(Settings{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	serveOnce(t, h, ctx)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s after the client left", took)
	}
}
