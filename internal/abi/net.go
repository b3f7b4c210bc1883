package abi

import (
	"fmt"
	"regexp"
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

var ifaceRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`) // IFNAMSIZ less the NUL

// ParseNet parses a network setting: user, none or tap:IFACE.
func ParseNet(s string) (Net, error) {
	switch NetMode(s) {
	case NetUser, NetNone:
		return Net{Mode: NetMode(s)}, nil
	}
	if iface, ok := strings.CutPrefix(s, string(NetTap)+":"); ok && ifaceRe.MatchString(iface) {
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
