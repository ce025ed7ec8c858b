//go:build tools

// Package tools names the main packages that scripts/install-pulumi.sh builds
// from this module (never compiled itself: see the build tag).
package tools

import (
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
	_ "github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3"
)
