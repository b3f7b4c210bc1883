package guest

import (
	"fmt"
	"net"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// SetupNetwork brings up lo and, unless the mode is abi.NetNone, the first Ethernet link (chosen by
// type and index, not by name), configured statically when the config has an address. It returns the configured link's name, or
// "" when there is no NIC.
func SetupNetwork(n abi.Network) (string, error) {
	if err := linkUp("lo"); err != nil {
		return "", fmt.Errorf("network: bring up lo: %w", err)
	}
	if n.Mode == string(abi.NetNone) {
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
	if n.Address == "" {
		// A tap device without a host address: the link comes up unconfigured, for the
		// workload to configure (e.g. with its own DHCP client).
		if err := netlink.LinkSetUp(eth); err != nil {
			return name, fmt.Errorf("network: bring up %s: %w", name, err)
		}
		return name, nil
	}
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

// linkUp brings the interface name up with SIOCSIFFLAGS. Every guest does this for lo before its
// workload starts; under software emulation the ioctl saves about 10 ms over the netlink
// library, whose first use is what costs (network.go's other steps need netlink).
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
