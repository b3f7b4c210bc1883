package abi

import "fmt"

// VerityCmdlineKey is the kernel command line parameter (ukernel.verity=<root hash>) through
// which a read-only image hands its dm-verity root hash to the guest init.
const VerityCmdlineKey = "ukernel.verity"

// Table returns the device-mapper table line of a verity target over dev, which holds both the
// data and, at HashOffset, the hash tree (e.g. /dev/vda2). Lengths are in 512-byte sectors.
func (v *Verity) Table(dev string) string {
	return fmt.Sprintf("0 %d verity 1 %s %s %d %d %d %d %s %s %s",
		v.DataBlocks*int64(v.BlockSize)/512, dev, dev, v.BlockSize, v.BlockSize,
		v.DataBlocks, v.HashOffset/int64(v.BlockSize), v.HashAlgorithm, v.RootHash, v.Salt)
}
