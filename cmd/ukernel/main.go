// Command ukernel is the host CLI: init, env, build, pack, run, inspect and friends.
package main

import (
	"os"

	"github.com/ukernel-dev/ukernel/pkg/cmd/root"
)

func main() {
	os.Exit(root.Main())
}
