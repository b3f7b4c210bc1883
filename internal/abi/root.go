package abi

// RootWorkload reports whether the entry or a service of m runs as root (a user the image does
// not list counts as root; the guest refuses to start it anyway). Only root can open the
// guest's device nodes to the host (devtmpfs makes them 0600 root), so host and guest both ask
// this to decide what init must hold before the workload starts: for such a workload the
// output channel is a virtio-serial port (one open per port, root or not) instead of the
// second UART (which any root process can open beside init).
func (m *Manifest) RootWorkload() bool {
	isRoot := func(name string) bool {
		if name == "" || name == "root" {
			return true
		}
		for _, u := range m.Users {
			if u.Name == name {
				return u.UID == 0
			}
		}
		return true
	}
	if len(m.Entry) > 0 && isRoot(m.User) {
		return true
	}
	for _, s := range m.Services {
		if isRoot(s.User) {
			return true
		}
	}
	return false
}
