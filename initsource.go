// Package ukernel embeds the guest init's source so that the host CLI, however it was installed
// (`go build`, `go install`), can build a static ukernel-init for the guest with no generate step.
package ukernel

import "embed"

// InitSource holds the module files and the packages that make up cmd/ukernel-init.
//
//go:embed go.mod go.sum cmd/ukernel-init internal/guest internal/abi
var InitSource embed.FS
