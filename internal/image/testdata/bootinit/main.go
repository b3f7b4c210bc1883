// Command bootinit is a stand-in PID 1 for the image boot test: it loads the modules the
// manifest lists, in its order, prints what it found and powers off.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

func main() {
	defer unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	raw, err := os.ReadFile("/ukernel/manifest.json")
	if err != nil {
		fmt.Println("BOOTINIT FAIL", err)
		return
	}
	var m struct {
		Name    string                   `json:"name"`
		Kernel  struct{ Release string } `json:"kernel"`
		Modules []string                 `json:"modules"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		fmt.Println("BOOTINIT FAIL", err)
		return
	}
	for _, rel := range m.Modules {
		f, err := os.Open(filepath.Join("/lib/modules", m.Kernel.Release, rel))
		if err != nil {
			fmt.Println("BOOTINIT FAIL", err)
			return
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && err != unix.EEXIST {
			fmt.Println("BOOTINIT FAIL loading", rel, err)
			return
		}
	}
	fmt.Printf("BOOTINIT OK %s %d modules\n", m.Name, len(m.Modules))
}
