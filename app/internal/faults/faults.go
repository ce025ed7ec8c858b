// Package faults injects errors and latency for release-analysis tests.
//
// The injecting code exists only in builds made with -tags faults
// (enabled.go). In every other build, production images included, Load
// ignores the variables and returns no middleware (disabled.go), so a stray
// FAULT_ERROR_RATE can neither change behaviour nor stop the service.
package faults

import "time"

// The variables a fault-injection build reads.
const (
	EnvErrorRate = "FAULT_ERROR_RATE"
	EnvLatency   = "FAULT_LATENCY"
)

// Settings is what a fault-injection build was asked to do.
type Settings struct {
	// ErrorRate is the share of requests, 0..1, answered 500.
	ErrorRate float64
	// Latency is added to every request before it is handled.
	Latency time.Duration
}

// Active reports whether the settings change any request.
func (s Settings) Active() bool { return s.ErrorRate > 0 || s.Latency > 0 }
