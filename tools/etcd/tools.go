//go:build tools

// Package tools names the main package that scripts/install-kubernetes.sh builds
// from this module (never compiled itself: see the build tag).
package tools

import _ "go.etcd.io/etcd/server/v3"
