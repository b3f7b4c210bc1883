// Command coldstart measures cold-start time: it boots an image (the minimal preset) N times
// with `ukernel run` and the same kernel with a one-line busybox /init N times with QEMU
// directly (interleaved, in ABBA order), under the same accelerator, and prints the median
// time from process start to the first workload line for both, their ratio, and the peak RSS
// of the ukernel host process.
//
//	go build -o /tmp/ukernel ./cmd/ukernel
//	go run ./bench/coldstart -ukernel /tmp/ukernel -image dist/minimal.img -n 21
//
// With -base-ukernel and -base-image it compares two builds of ukernel instead (each with the
// image it packed, since the image holds the guest's init), in the same ABBA order: before and
// after a change, in one run.
//
// An image whose entry runs on after its first line (the worker preset, whose first line is its
// first tick) is interrupted 10 s after it.
//
// With -floor it boots, in the same rounds, the image's floor as well: the image's own entry (its
// python3.11 running its script) as the kernel's /init, from an initramfs of the files the
// entry's start reads, copied from the image's root partition (fsck.erofs extracts it), with the
// environment the image's init gives the entry; no ukernel init, no modules, no root mount
// (floor.go). It prints the floor's median, its ratio to busybox and the image's to the floor.
//
//	go run ./bench/coldstart -ukernel /tmp/ukernel -image pm/dist/pm.img -n 11 -floor
//
// With -http GUESTPORT the image is a server (the flask preset): the time is to its first HTTP
// 200 on -path through --publish, after which the run is interrupted.
//
//	ukernel -C flaskapp init --name flaskapp --template flask && ukernel -C flaskapp pack
//	go run ./bench/coldstart -ukernel /tmp/ukernel -image flaskapp/dist/flaskapp.img -n 11 -http 8080
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/perf"
	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/trace"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/bootfiles"
	"github.com/ukernel-dev/ukernel/internal/vmm/qemu"
	"github.com/ukernel-dev/ukernel/internal/vmm/vmmtest"
)

// kernelLine matches the kernel's own console lines ("[    1.234567] ...").
var kernelLine = regexp.MustCompile(`^\[\s*\d+\.\d+\]`)

func main() {
	ukernel := flag.String("ukernel", "ukernel", "ukernel binary")
	img := flag.String("image", "", "image of the minimal preset")
	n := flag.Int("n", 21, "boots per variant (this machine's run-to-run noise is several percent: fewer say little)")
	accel := flag.String("accel", vmm.AccelTCG, "accelerator for both variants")
	timeout := flag.Duration("timeout", 60*time.Second, "deadline of one boot")
	baseUK := flag.String("base-ukernel", "", "compare with this ukernel binary (the build before a change) instead of busybox")
	baseImg := flag.String("base-image", "", "the image -base-ukernel packed")
	httpPort := flag.Int("http", 0, "the guest port of a server image: time its first HTTP 200 instead of its first line")
	httpPath := flag.String("path", "/healthz", "the path -http asks for")
	floor := flag.Bool("floor", false, "also boot the floor: the image's entry as the kernel's /init from an initramfs of the files its start reads (no ukernel init, modules or root mount)")
	flag.Parse()
	if *floor && (*baseUK != "" || *httpPort != 0) {
		log.Fatal("-floor goes with neither -base-ukernel nor -http: it compares the image, its floor and busybox")
	}
	ready := readiness{guestPort: *httpPort, path: *httpPath}
	if (*baseUK == "") != (*baseImg == "") {
		log.Fatal("-base-ukernel and -base-image go together")
	}
	if *baseImg != "" {
		if abs, err := filepath.Abs(*baseImg); err == nil {
			*baseImg = abs
		}
	}
	if *img == "" {
		log.Fatal("-image is required (e.g. dist/minimal.img from `ukernel init --template minimal && ukernel pack`)")
	}
	// ukernel -C takes a relative --image from the scratch project; name the image absolutely.
	if abs, err := filepath.Abs(*img); err == nil {
		*img = abs
	}
	cacheDir, err := cache.DefaultDir()
	if err != nil {
		log.Fatal(err)
	}
	boot, err := bootfiles.Prepare(*img, cacheDir)
	if err != nil {
		log.Fatal(err)
	}
	work, err := os.MkdirTemp("", "coldstart")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)
	initrd := filepath.Join(work, "busybox.cpio")
	if err := vmmtest.WriteInitrd(initrd, "#!/bin/sh\necho coldstart: hello\npoweroff -f\n", nil); err != nil {
		log.Fatal(err)
	}

	var fl floorGuest
	if *floor {
		if fl, err = prepareFloor(context.Background(), *img, boot.Manifest.Kernel.Cmdline, work); err != nil {
			log.Fatalf("floor: %v", err)
		}
	}

	var imgTimes, bbTimes, flTimes, flExits []time.Duration
	// QEMU's CPU time (all its threads) to the same moment: on this shared host the wall time
	// of a TCG boot moves with the other sessions' load, the CPU the guest took much less.
	var imgCPU, bbCPU, flCPU []time.Duration
	var peakRSS, initPeak int64
	var boots, baseBoots []perf.Boot
	image := func(i int) {
		d, rss, proj, err := bootImage(*ukernel, boot.Image, *accel, work, *timeout, ready)
		if err != nil {
			log.Fatalf("image boot %d: %v", i, err)
		}
		imgCPU = append(imgCPU, d.cpu)
		// The run's own spans break the image's cold start down by phase.
		b, initRSS, err := runBreakdown(proj)
		if err != nil {
			log.Printf("image boot %d: no phase breakdown: %v", i, err)
		} else {
			boots = append(boots, b)
		}
		initPeak = max(initPeak, initRSS)
		imgTimes = append(imgTimes, d.wall)
		peakRSS = max(peakRSS, rss)
	}
	busybox := func(i int) {
		if *baseUK != "" {
			d, _, proj, err := bootImage(*baseUK, *baseImg, *accel, work, *timeout, ready)
			if err != nil {
				log.Fatalf("base boot %d: %v", i, err)
			}
			if b, _, err := runBreakdown(proj); err == nil {
				baseBoots = append(baseBoots, b)
			}
			bbTimes, bbCPU = append(bbTimes, d.wall), append(bbCPU, d.cpu)
			return
		}
		d, err := bootBusybox(boot.Vmlinux, initrd, boot.Manifest.Kernel.Cmdline, *accel, work, *timeout)
		if err != nil {
			log.Fatalf("busybox boot %d: %v", i, err)
		}
		bbTimes, bbCPU = append(bbTimes, d.wall), append(bbCPU, d.cpu)
	}
	floorBoot := func(i int) {
		if !*floor {
			return
		}
		first, exit, err := bootConsole(boot.Vmlinux, fl.initrd, fl.cmdline, *accel, work, *timeout, func(l string) bool {
			return strings.TrimSpace(l) != "" && !kernelLine.MatchString(l)
		})
		if err != nil {
			log.Fatalf("floor boot %d: %v", i, err)
		}
		flTimes, flCPU = append(flTimes, first.wall), append(flCPU, first.cpu)
		if exit != 0 {
			flExits = append(flExits, exit-first.wall)
		}
	}
	// ABBA order: on the development machine consecutive QEMU boots alternate between slower
	// and faster (by about 10%, whatever the guest), so a fixed order would hand one variant
	// every slow boot. The floor goes between the two (image, floor, busybox, busybox, floor,
	// image, ...).
	for i := range *n {
		if i%2 == 0 {
			image(i)
			floorBoot(i)
			busybox(i)
		} else {
			busybox(i)
			floorBoot(i)
			image(i)
		}
	}
	mi, mb := median(imgTimes), median(bbTimes)
	ci, cb := median(imgCPU), median(bbCPU)
	what := "first workload line"
	if ready.guestPort != 0 {
		what = "first HTTP 200 on " + ready.path
	}
	fmt.Printf("accelerator:              %s\n", *accel)
	fmt.Printf("boots per variant:        %d\n", *n)
	fmt.Printf("image (ukernel run):      median %s to %s (QEMU CPU %s)\n", mi.Round(time.Millisecond), what, ci.Round(time.Millisecond))
	if *baseUK != "" {
		fmt.Printf("base (ukernel run):       median %s to %s (QEMU CPU %s)\n", mb.Round(time.Millisecond), what, cb.Round(time.Millisecond))
		fmt.Printf("ratio to the base:        %.3fx (QEMU CPU %.3fx)\n", float64(mi)/float64(mb), float64(ci)/float64(cb))
	} else {
		fmt.Printf("busybox init (QEMU):      median %s to first line (QEMU CPU %s)\n", mb.Round(time.Millisecond), cb.Round(time.Millisecond))
		fmt.Printf("ratio:                    %.2fx (target <= 1.25x; QEMU CPU %.2fx)\n", float64(mi)/float64(mb), float64(ci)/float64(cb))
	}
	if *floor {
		mf, cf := median(flTimes), median(flCPU)
		fmt.Printf("floor (entry as /init):   median %s to first line (QEMU CPU %s; initramfs: %d files, %.1f MB)\n", mf.Round(time.Millisecond), cf.Round(time.Millisecond), fl.files, float64(fl.bytes)/1e6)
		fmt.Printf("floor ratio:              %.2fx to busybox (QEMU CPU %.2fx); the image is %.2fx the floor (QEMU CPU %.2fx)\n", float64(mf)/float64(mb), float64(cf)/float64(cb), float64(mi)/float64(mf), float64(ci)/float64(cf))
		fmt.Printf("floor command line:       %s\n", fl.cmdline)
		if len(flExits) > 0 {
			fmt.Printf("floor line to its exit:   median %s (finalization; the kernel's panic line when init exits)\n", median(flExits).Round(time.Millisecond))
		}
	}
	fmt.Printf("ukernel host peak RSS:    %.1f MB (target <= 40 MB)\n", float64(peakRSS)/1024)
	fmt.Printf("guest init peak RSS:      %.1f MB (target <= 10 MB)\n", float64(initPeak)/1024)
	if len(boots) > 0 {
		fmt.Println()
		perf.WriteText(os.Stdout, perf.Summarise(boots))
	}
	if len(baseBoots) > 0 {
		fmt.Println("\nThe base:")
		perf.WriteText(os.Stdout, perf.Summarise(baseBoots))
	}
}

// runBreakdown reads the phases of the latest run in proj from its trace, and the init's peak
// RSS (KiB) from its poweroff event.
func runBreakdown(proj string) (perf.Boot, int64, error) {
	r, err := runlog.Find(proj, "")
	if err != nil {
		return perf.Boot{}, 0, err
	}
	t, err := trace.Load(proj, r)
	if err != nil {
		return perf.Boot{}, 0, err
	}
	var rss int64
	for _, ev := range t.Events {
		if ev.Type == abi.EventPowerOff {
			rss = ev.Values[abi.ValueInitPeakRSS]
		}
	}
	b, err := perf.Breakdown(t)
	return b, rss, err
}

// readiness is what ends a server image's cold start; guestPort 0 means its first line.
type readiness struct {
	guestPort int
	path      string
}

// bootImage runs `ukernel run --image` in a scratch project and times the first stdout line that
// is not a kernel message, or with ready.guestPort the first HTTP 200 through a published port
// (then interrupts the run). It returns the process's peak RSS in KiB and the scratch project.
func bootImage(ukernel, img, accel, work string, timeout time.Duration, ready readiness) (timing, int64, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	proj, err := os.MkdirTemp(work, "proj")
	if err != nil {
		return timing{}, 0, "", err
	}
	// The guest's name is the host's, per process: two benches may run at once.
	name := fmt.Sprintf("coldstart-bench-%d", os.Getpid())
	args := []string{"-C", proj, "run", "--image", img, "--accel", accel, "--name", name}
	url := ""
	if ready.guestPort != 0 {
		port, err := freePort()
		if err != nil {
			return timing{}, 0, "", err
		}
		args = append(args, "--net", "user", "--publish", fmt.Sprintf("%d:%d", port, ready.guestPort))
		url = fmt.Sprintf("http://127.0.0.1:%d%s", port, ready.path)
	}
	cmd := exec.CommandContext(ctx, ukernel, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return timing{}, 0, "", err
	}
	var stderr tail
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return timing{}, 0, "", err
	}
	// wait4's peak RSS would include QEMU (a waited-for child): sample ukernel's own VmHWM.
	var rss int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
			if err != nil {
				return
			}
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
					var kb int64
					fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb)
					rss = max(rss, kb)
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	var first timing
	cpuNow := func() time.Duration { return cpuTime(child(cmd.Process.Pid)) } // QEMU, ukernel's child
	if url != "" {
		go io.Copy(io.Discard, stdout)
		first.wall = firstOK(ctx, url, start)
		first.cpu = cpuNow()
		cmd.Process.Signal(syscall.SIGINT) // a server runs until stopped
	} else {
		first.wall = firstLine(stdout, start)
		first.cpu = cpuNow()
		// A worker (the worker preset: its first line is its first tick) runs until stopped.
		stop := time.AfterFunc(10*time.Second, func() { cmd.Process.Signal(syscall.SIGINT) })
		io.Copy(io.Discard, stdout)
		stop.Stop()
	}
	cmd.Wait() // the workload's exit code is not the benchmark's business
	<-sampled
	if first.wall == 0 {
		return timing{}, 0, "", fmt.Errorf("no workload line on stdout (or HTTP 200) within %s; ukernel's stderr ends:\n%s", timeout, stderr.b)
	}
	return first, rss, proj, nil
}

// bootBusybox boots the kernel with the one-line init through the QEMU backend and times the
// line's appearance in the console file.
func bootBusybox(kernel, initrd, cmdline, accel, work string, timeout time.Duration) (timing, error) {
	first, _, err := bootConsole(kernel, initrd, cmdline, accel, work, timeout, func(l string) bool {
		return l == "coldstart: hello"
	})
	return first, err
}

// bootConsole boots the kernel with initrd as the whole guest through the QEMU backend (the same
// path and device set for every initramfs) and times the first console line that isLine accepts,
// and the kernel's panic line after it (the floor's init exiting), or 0 if none came.
func bootConsole(kernel, initrd, cmdline, accel, work string, timeout time.Duration, isLine func(string) bool) (first timing, exit time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	run := runlog.Run{ID: "busybox", Dir: work}
	os.Remove(run.Console())
	spec := vmm.Spec{
		Kernel: kernel, Initrd: initrd, Cmdline: cmdline, MemoryMB: 256, Accel: accel,
		Net: vmm.Net{Mode: "none"}, ConsolePath: run.Console(), LogPath: run.VMMLog(),
		APISocket: filepath.Join(work, "bb.qmp"),
	}
	start := time.Now()
	vm, err := qemu.New(nil).Start(ctx, spec)
	if err != nil {
		return timing{}, 0, err
	}
	defer vm.Wait(ctx)
	for ctx.Err() == nil {
		var exited bool
		select {
		case <-vm.Done(): // read the console once more: all QEMU wrote is in it now
			exited = true
		default:
		}
		b, _ := os.ReadFile(run.Console())
		lines := strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n")
		for _, l := range lines[:len(lines)-1] { // the last is not complete yet
			switch {
			case first.wall == 0 && isLine(l):
				first = timing{time.Since(start), cpuTime(vm.PID)}
			case first.wall != 0 && strings.Contains(l, "Kernel panic"):
				return first, time.Since(start), nil
			}
		}
		if exited {
			if first.wall == 0 {
				return timing{}, 0, fmt.Errorf("the guest powered off without its line; console ends:\n%s", b[max(0, len(b)-2048):])
			}
			return first, 0, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	if first.wall != 0 {
		return first, 0, nil
	}
	return timing{}, 0, fmt.Errorf("no line from the guest within %s", timeout)
}

// timing is a boot's time to its first line (or HTTP 200), on the host's clock and in the CPU
// time QEMU's threads had taken by then.
type timing struct{ wall, cpu time.Duration }

// child returns the pid of a child process of pid (QEMU, the only one `ukernel run` starts), or 0.
func child(pid int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		if f := strings.Fields(string(b)); len(f) > 0 {
			c, _ := strconv.Atoi(f[0])
			return c
		}
	}
	return 0
}

// cpuTime sums the time on CPU of pid's threads (schedstat, in ns); 0 if pid is gone.
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	var sum time.Duration
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			sum += time.Duration(ns)
		}
	}
	return sum
}

func firstLine(r io.Reader, start time.Time) time.Duration {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !kernelLine.MatchString(l) {
			return time.Since(start)
		}
	}
	return 0
}

// firstOK polls url until it answers 200 and returns the time since start, or 0 at ctx's end.
func firstOK(ctx context.Context, url string, start time.Time) time.Duration {
	c := http.Client{Timeout: time.Second}
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail keeps the last 4 KiB written to it.
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
