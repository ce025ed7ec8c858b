//go:build !faults

package faults

import "github.com/gin-gonic/gin"

// Enabled reports whether this binary was built with -tags faults.
const Enabled = false

// Load ignores the FAULT_* variables: this build cannot inject faults.
func Load(func(string) (string, bool)) (Settings, error) { return Settings{}, nil }

// Middleware returns nil: this build cannot inject faults.
func Middleware(Settings) gin.HandlerFunc { return nil }
