package guest

import (
	"fmt"
	"net"
	"sort"

	"github.com/vishvananda/netlink"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// SetupNetwork brings up lo and, unless the mode is "none", configures the first Ethernet link
// (chosen by type and index, not by name) statically. It returns the configured link's name, or
// "" when there is no NIC.
func SetupNetwork(n abi.Network) (string, error) {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return "", fmt.Errorf("network: find lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return "", fmt.Errorf("network: bring up lo: %w", err)
	}
	if n.Mode == "none" || n.Address == "" {
		return "", nil
	}
	links, err := netlink.LinkList()
	if err != nil {
		return "", fmt.Errorf("network: list links: %w", err)
	}
	sort.Slice(links, func(i, j int) bool { return links[i].Attrs().Index < links[j].Attrs().Index })
	var eth netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if a.EncapType == "ether" && a.Flags&net.FlagLoopback == 0 && l.Type() == "device" {
			eth = l
			break
		}
	}
	if eth == nil {
		return "", nil
	}
	name := eth.Attrs().Name
	addr, err := netlink.ParseAddr(n.Address)
	if err != nil {
		return name, fmt.Errorf("network: address %q: want CIDR like 10.0.2.15/24: %w", n.Address, err)
	}
	if err := netlink.AddrAdd(eth, addr); err != nil {
		return name, fmt.Errorf("network: add %s to %s: %w", n.Address, name, err)
	}
	if err := netlink.LinkSetUp(eth); err != nil {
		return name, fmt.Errorf("network: bring up %s: %w", name, err)
	}
	if n.Gateway != "" {
		gw := net.ParseIP(n.Gateway)
		if gw == nil {
			return name, fmt.Errorf("network: gateway %q is not an IP address", n.Gateway)
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw}); err != nil {
			return name, fmt.Errorf("network: default route via %s on %s: %w", n.Gateway, name, err)
		}
	}
	return name, nil
}
