// Package daprcontrolplane only anchors this module: it builds Dapr's
// sentry, operator and sidecar injector (the go.mod's tool lines) at the
// sidecar's version (tools/daprd) for tools/validate's cluster test. The
// replace lines are dapr's own, as in tools/daprd.
package daprcontrolplane
