package abi

import (
	"fmt"
	"strings"
)

// NetMode is how a guest is networked: the mode of [run] net and --net, and of Network.Mode.
type NetMode string

// Network modes.
const (
	NetUser NetMode = "user" // the VMM's user-mode network: NAT to the host, published ports
	NetTap  NetMode = "tap"  // a host tap device, reachable directly
	NetNone NetMode = "none" // no network device
)

// Net is a network setting as ukernel.toml's [run] net and --net give it: user, none or
// tap:IFACE. ParseNet is the only place that reads that syntax.
type Net struct {
	Mode  NetMode
	Iface string // the tap device, for NetTap
}

// ifaceName reports whether s is a tap device's name: 1 to 15 bytes (IFNAMSIZ less the NUL) of
// ASCII letters, digits, '_', '.' and '-'. Not a regexp: the guest's init imports this package,
// and a package-level regexp costs its start (the compile and the unicode tables regexp pulls
// in) about 20 ms under software emulation.
func ifaceName(s string) bool {
	if len(s) == 0 || len(s) > 15 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// ParseNet parses a network setting: user, none or tap:IFACE.
func ParseNet(s string) (Net, error) {
	switch NetMode(s) {
	case NetUser, NetNone:
		return Net{Mode: NetMode(s)}, nil
	}
	if iface, ok := strings.CutPrefix(s, string(NetTap)+":"); ok && ifaceName(iface) {
		return Net{Mode: NetTap, Iface: iface}, nil
	}
	return Net{}, fmt.Errorf("%q is not a network mode; expected user, none or tap:IFACE", s)
}

// String is the setting as ParseNet reads it.
func (n Net) String() string {
	if n.Mode == NetTap {
		return string(NetTap) + ":" + n.Iface
	}
	return string(n.Mode)
}

// MarshalText writes the setting as ParseNet reads it; the zero Net (not set) as "".
func (n Net) MarshalText() ([]byte, error) { return []byte(n.String()), nil }

// UnmarshalText parses a setting; "" is the zero Net (not set).
func (n *Net) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*n = Net{}
		return nil
	}
	p, err := ParseNet(string(b))
	if err != nil {
		return err
	}
	*n = p
	return nil
}
