// Package ginmode protects the process from gin's own handling of GIN_MODE.
//
// gin reads GIN_MODE in its package init and panics on an unknown value,
// which would happen before the service gets a chance to validate its
// configuration and print a clear error. This package is initialised before
// gin (the Go spec initialises packages in import-path order when they do not
// depend on each other, and "github.com/gin-deploy/..." sorts before
// "github.com/gin-gonic/..."): it records the original value and removes an
// invalid one from the environment, so the config package can report it
// properly instead.
package ginmode

import "os"

// Name of the environment variable gin reads.
const Name = "GIN_MODE"

// Captured at package initialisation, before gin's init runs.
var original, present = os.LookupEnv(Name)

func init() {
	if present && !Valid(original) {
		_ = os.Unsetenv(Name)
	}
}

// Valid reports whether v is a mode gin accepts.
func Valid(v string) bool {
	switch v {
	case "debug", "release", "test":
		return true
	}
	return false
}

// Original returns GIN_MODE as it was when the process started, even if it
// was removed from the environment because gin would have rejected it.
func Original() (string, bool) {
	return original, present
}

// Lookup wraps an environment lookup function so that GIN_MODE resolves to
// its original value. Other variables are passed through unchanged.
func Lookup(next func(string) (string, bool)) func(string) (string, bool) {
	return func(key string) (string, bool) {
		if key == Name {
			return Original()
		}
		return next(key)
	}
}
