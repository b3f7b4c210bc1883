package firecracker

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// A file's POSIX access ACL as the kernel keeps it in an extended attribute
// (include/uapi/linux/posix_acl_xattr.h): a version, then entries of tag, permissions and id,
// little-endian, sorted by tag then id. The jail uses it to let the jailed firecracker write a
// disk it may not by the mode, without changing the disk's owner.
const (
	aclAttr     = "system.posix_acl_access"
	aclVersion  = 2
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
	aclNoID     = 0xffffffff
)

type aclEntry struct {
	tag, perm uint16
	id        uint32
}

// grantACL gives uid the permissions perm (4 read, 2 write) on path with an ACL entry, and
// returns what takes it back: the ACL as it was, which for a file without one is its mode. An
// entry for uid found already is one a crashed run left: undo drops it too.
func grantACL(path string, uid int, perm uint16) (undo func() error, err error) {
	acl, err := getACL(path)
	if err != nil {
		return nil, err
	}
	isUID := func(e aclEntry) bool { return e.tag == aclUser && e.id == uint32(uid) }
	old := withoutUser(acl, uid)
	i := slices.IndexFunc(acl, isUID)
	if i < 0 {
		acl = append(acl, aclEntry{aclUser, perm, uint32(uid)})
	} else {
		acl[i].perm |= perm
	}
	// The mask bounds every named entry: it must let the new one through.
	if i := slices.IndexFunc(acl, func(e aclEntry) bool { return e.tag == aclMask }); i >= 0 {
		acl[i].perm |= perm
	} else {
		var mask uint16
		for _, e := range acl {
			if e.tag == aclUser || e.tag == aclGroupObj || e.tag == aclGroup {
				mask |= e.perm
			}
		}
		acl = append(acl, aclEntry{aclMask, mask, aclNoID})
	}
	if err := setACL(path, acl); err != nil {
		return nil, err
	}
	return func() error { return setACL(path, old) }, nil
}

// withoutUser is acl without uid's entry (and without the mask, once no named entry is left).
func withoutUser(acl []aclEntry, uid int) []aclEntry {
	out := slices.DeleteFunc(slices.Clone(acl), func(e aclEntry) bool { return e.tag == aclUser && e.id == uint32(uid) })
	if !slices.ContainsFunc(out, func(e aclEntry) bool { return e.tag == aclUser || e.tag == aclGroup }) {
		out = slices.DeleteFunc(out, func(e aclEntry) bool { return e.tag == aclMask })
	}
	return out
}

// revokeACL drops uid's entry from path's ACL, if it has one: how a grant recorded by a run that
// crashed is taken back.
func revokeACL(path string, uid int) error {
	acl, err := getACL(path)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(acl, func(e aclEntry) bool { return e.tag == aclUser && e.id == uint32(uid) }) {
		return nil
	}
	return setACL(path, withoutUser(acl, uid))
}

// getACL returns path's access ACL; a file without one has the three entries of its mode.
func getACL(path string) ([]aclEntry, error) {
	buf := make([]byte, 4+8*16)
	n, err := unix.Getxattr(path, aclAttr, buf)
	if errors.Is(err, unix.ERANGE) {
		if n, err = unix.Getxattr(path, aclAttr, nil); err == nil {
			buf = make([]byte, n)
			n, err = unix.Getxattr(path, aclAttr, buf)
		}
	}
	if errors.Is(err, unix.ENODATA) {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		p := uint16(fi.Mode().Perm())
		return []aclEntry{{aclUserObj, p >> 6 & 7, aclNoID}, {aclGroupObj, p >> 3 & 7, aclNoID}, {aclOther, p & 7, aclNoID}}, nil
	}
	if err != nil {
		return nil, &os.PathError{Op: "getxattr " + aclAttr, Path: path, Err: err}
	}
	buf = buf[:n]
	if len(buf) < 4 || (len(buf)-4)%8 != 0 || binary.LittleEndian.Uint32(buf) != aclVersion {
		return nil, fmt.Errorf("%s: an ACL of an unknown format", path)
	}
	var acl []aclEntry
	for b := buf[4:]; len(b) > 0; b = b[8:] {
		acl = append(acl, aclEntry{binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:]), binary.LittleEndian.Uint32(b[4:])})
	}
	return acl, nil
}

// setACL sets path's access ACL. The kernel keeps one of only the three mode entries as the
// mode, without the attribute.
func setACL(path string, acl []aclEntry) error {
	acl = slices.SortedFunc(slices.Values(acl), func(a, b aclEntry) int {
		return cmp.Or(cmp.Compare(a.tag, b.tag), cmp.Compare(a.id, b.id))
	})
	buf := binary.LittleEndian.AppendUint32(nil, aclVersion)
	for _, e := range acl {
		buf = binary.LittleEndian.AppendUint16(buf, e.tag)
		buf = binary.LittleEndian.AppendUint16(buf, e.perm)
		buf = binary.LittleEndian.AppendUint32(buf, e.id)
	}
	if err := unix.Setxattr(path, aclAttr, buf, 0); err != nil {
		return &os.PathError{Op: "setxattr " + aclAttr, Path: path, Err: err}
	}
	return nil
}
