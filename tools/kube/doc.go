// Package kube only anchors this module: it builds Kubernetes v1.35.4's
// kube-apiserver, kubectl and kube-controller-manager (the go.mod's tool
// lines) for scripts/kube-check.sh, from the Go module proxy.
package kube
