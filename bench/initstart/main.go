// Command initstart measures the guest init's start to its main under QEMU's user-mode TCG (the
// translator of a TCG boot, without the guest kernel): the Go runtime's start and every package
// initialiser. Run outside a guest, ukernel-init exits at once in main (it is not PID 1), so the
// CPU time of `qemu-x86_64 ukernel-init` is that start. Two builds are run in ABBA order; each
// run's user and system time are summed.
//
//	go build -trimpath -ldflags='-s -w' -o /tmp/init-new ./cmd/ukernel-init   # CGO_ENABLED=0
//	go run ./bench/initstart -init /tmp/init-new -base /tmp/init-old -n 40
//
// qemu-x86_64 is Debian's qemu-user package.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os/exec"
	"slices"
	"time"
)

func main() {
	bin := flag.String("init", "", "the init binary to measure")
	base := flag.String("base", "", "the init binary to compare with")
	n := flag.Int("n", 40, "runs of each binary")
	qemu := flag.String("qemu", "qemu-x86_64", "QEMU's user-mode emulator")
	flag.Parse()
	if *bin == "" || *base == "" {
		log.Fatal("-init and -base are required")
	}
	cpu := map[string][]time.Duration{}
	run := func(bin string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // about 0.1 s each
		defer cancel()
		cmd := exec.CommandContext(ctx, *qemu, bin)
		_ = cmd.Run() // it exits 2: not PID 1
		if cmd.ProcessState == nil || ctx.Err() != nil {
			log.Fatalf("%s %s did not run to its exit within a minute", *qemu, bin)
		}
		cpu[bin] = append(cpu[bin], cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
	}
	for i := range *n {
		if i%2 == 0 {
			run(*bin)
			run(*base)
		} else {
			run(*base)
			run(*bin)
		}
	}
	for _, b := range []string{*bin, *base} {
		d := slices.Clone(cpu[b])
		slices.Sort(d)
		fmt.Printf("%s: CPU to main, median %.1f ms (p25 %.1f, p75 %.1f), n = %d\n", b,
			ms(d[len(d)/2]), ms(d[len(d)/4]), ms(d[3*len(d)/4]), len(d))
	}
	fmt.Printf("ratio: %.3fx\n", float64(median(cpu[*bin]))/float64(median(cpu[*base])))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
