package guest

import (
	"fmt"
	"sort"
	"strings"
	"syscall"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// rootUser is who "" and "root" name; the image's passwd has it too.
var rootUser = abi.User{Name: "root", UID: 0, GID: 0, Home: "/root", Shell: "/bin/sh"}

// LookupUser finds the account name among the image's users (abi.Manifest.Users). An empty
// name is root, as the manifest defines it.
func LookupUser(users []abi.User, name string) (abi.User, error) {
	if name == "" {
		name = "root"
	}
	for _, u := range users {
		if u.Name == name {
			return u, nil
		}
	}
	if name == "root" {
		return rootUser, nil
	}
	known := make([]string, 0, len(users))
	for _, u := range users {
		known = append(known, u.Name)
	}
	sort.Strings(known)
	return abi.User{}, fmt.Errorf("user %q is not in the image's users (known: %s)", name, strings.Join(known, ", "))
}

// Credential is what a process of u runs with: its uid and primary gid, and as its only
// supplementary group secretGroup, the group its secrets are readable by (0: none; an empty list
// makes the kernel drop init's). Root gets nil: it keeps init's, and reads every secret anyway.
func Credential(u abi.User, secretGroup uint32) *syscall.Credential {
	if u.UID == 0 && u.GID == 0 {
		return nil
	}
	groups := []uint32{}
	if secretGroup != 0 {
		groups = append(groups, secretGroup)
	}
	return &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: groups}
}
