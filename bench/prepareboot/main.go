// Command prepareboot times what `ukernel run` does on the host before it starts the VMM for an
// image it has booted before: bootfiles.Prepare with a warm boot cache (the image known by its
// identity, the boot files and vmlinux checked against their seals). It prints the median of n
// calls, in microseconds. Compare two versions by building this file in both trees and running
// the binaries in ABBA order.
//
//	go run ./bench/prepareboot -image dist/minimal.img [-n 200]
package main

import (
	"flag"
	"fmt"
	"log"
	"slices"
	"time"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/vmm/bootfiles"
)

func main() {
	img := flag.String("image", "", "a packed image")
	n := flag.Int("n", 200, "calls to time")
	flag.Parse()
	if *img == "" {
		log.Fatal("-image is required")
	}
	dir, err := cache.DefaultDir()
	if err != nil {
		log.Fatal(err)
	}
	if _, err := bootfiles.Prepare(*img, dir); err != nil { // warms the cache
		log.Fatal(err)
	}
	times := make([]time.Duration, *n)
	for i := range times {
		start := time.Now()
		if _, err := bootfiles.Prepare(*img, dir); err != nil {
			log.Fatal(err)
		}
		times[i] = time.Since(start)
	}
	slices.Sort(times)
	fmt.Printf("%d\n", times[len(times)/2].Microseconds())
}
