//go:build tools

// Keeps the compose command in this module's graph (go mod tidy).
package tools

import _ "github.com/docker/compose/v5/cmd"
