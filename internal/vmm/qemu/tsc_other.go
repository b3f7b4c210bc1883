//go:build !amd64

package qemu

// hostTSCKHz is unknown off amd64; the image's default stays in force.
func hostTSCKHz() int64 { return 0 }
