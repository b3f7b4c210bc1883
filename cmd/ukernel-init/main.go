// Command ukernel-init is the guest's PID 1. The host builds it from embedded sources at pack
// time, statically and without cgo; all logic lives in internal/guest.
package main

import "github.com/ukernel-dev/ukernel/internal/guest"

func main() { guest.Main() }
