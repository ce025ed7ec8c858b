//go:build tools

// Package tools names the main package that scripts/install-pulumi.sh builds
// from this module (never compiled itself: see the build tag).
package tools

import (
	_ "github.com/pulumi/pulumi-command/provider/cmd/pulumi-resource-command"
)
