package guest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// IO probe settings: IOProbeOps operations of IOProbeBlock bytes each, at random block-aligned
// offsets (a fixed seed, so every run visits the same offsets), within IOProbeFileSize for the
// writable target.
const (
	IOProbeOps      = 200
	IOProbeBlock    = 4096
	IOProbeFileSize = 8 << 20
)

// IOResult is one probe's latencies in ns, sorted.
type IOResult struct {
	Name   string
	Start  int64
	End    int64
	Direct bool // O_DIRECT: the page cache was bypassed
	Lat    []int64
}

// Event is the probe's report: ops and latency percentiles in ns.
func (r IOResult) Event() abi.Event {
	direct := int64(0)
	if r.Direct {
		direct = 1
	}
	// Under TCG the kernel may drop the TSC for the jiffies clocksource: times then come in
	// whole ticks (4 ms), and the host must not read the percentiles as latencies.
	v := map[string]int64{"ops": int64(len(r.Lat)), "direct": direct, "clock_res_ns": clockRes()}
	if len(r.Lat) > 0 {
		v["p50_ns"], v["p90_ns"], v["p99_ns"], v["max_ns"] = pct(r.Lat, 50), pct(r.Lat, 90), pct(r.Lat, 99), r.Lat[len(r.Lat)-1]
	}
	return abi.Event{Type: abi.EventProbe, Time: r.End, Name: r.Name, Start: r.Start, Duration: r.End - r.Start, Values: v}
}

// clockRes is the resolution of the events' clock in ns.
func clockRes() int64 {
	var ts unix.Timespec
	if err := unix.ClockGetres(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// pct is the nearest-rank percentile of sorted values.
func pct(sorted []int64, p int) int64 {
	i := (p*len(sorted)+99)/100 - 1
	return sorted[max(i, 0)]
}

// alignedBlock is one page-aligned block, as O_DIRECT wants.
func alignedBlock() ([]byte, error) {
	return unix.Mmap(-1, 0, IOProbeBlock, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
}

// openProbe opens path with O_DIRECT, or without it where the filesystem refuses (tmpfs).
func openProbe(path string, flags int) (*os.File, bool, error) {
	f, err := os.OpenFile(path, flags|unix.O_DIRECT, 0o600)
	if err == nil {
		return f, true, nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return nil, false, err
	}
	f, err = os.OpenFile(path, flags, 0o600)
	return f, false, err
}

// ProbeRead times IOProbeOps random block reads of the device or file at path.
func ProbeRead(name, path string, seed uint64) (IOResult, error) {
	f, direct, err := openProbe(path, os.O_RDONLY)
	if err != nil {
		return IOResult{}, fmt.Errorf("io probe %s: %w", path, err)
	}
	defer f.Close()
	size, err := f.Seek(0, 2)
	if err != nil || size < IOProbeBlock {
		return IOResult{}, fmt.Errorf("io probe %s: size %d: %v", path, size, err)
	}
	buf, err := alignedBlock()
	if err != nil {
		return IOResult{}, err
	}
	defer unix.Munmap(buf)
	rng := rand.New(rand.NewPCG(seed, 1))
	r := IOResult{Name: name, Start: Now(), Direct: direct}
	for range IOProbeOps {
		off := rng.Int64N(size/IOProbeBlock) * IOProbeBlock
		t := Now()
		if _, err := f.ReadAt(buf, off); err != nil {
			return IOResult{}, fmt.Errorf("io probe %s: read at %d: %w", path, off, err)
		}
		r.Lat = append(r.Lat, Now()-t)
	}
	r.End = Now()
	slices.Sort(r.Lat)
	return r, nil
}

// ProbeWriteRead times IOProbeOps random synchronous block writes to a scratch file in dir, then
// as many random reads of it, and removes the file.
func ProbeWriteRead(name, dir string, seed uint64) (IOResult, IOResult, error) {
	path := filepath.Join(dir, ".ukernel-ioprobe")
	defer os.Remove(path)
	f, direct, err := openProbe(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|unix.O_DSYNC)
	if err != nil {
		return IOResult{}, IOResult{}, fmt.Errorf("io probe %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Truncate(IOProbeFileSize); err != nil {
		return IOResult{}, IOResult{}, fmt.Errorf("io probe %s: %w", path, err)
	}
	buf, err := alignedBlock()
	if err != nil {
		return IOResult{}, IOResult{}, err
	}
	defer unix.Munmap(buf)
	rng := rand.New(rand.NewPCG(seed, 2))
	w := IOResult{Name: name + ".randwrite", Start: Now(), Direct: direct}
	for i := range IOProbeOps {
		buf[0] = byte(i)
		off := rng.Int64N(IOProbeFileSize/IOProbeBlock) * IOProbeBlock
		t := Now()
		if _, err := f.WriteAt(buf, off); err != nil {
			return IOResult{}, IOResult{}, fmt.Errorf("io probe %s: write at %d: %w", path, off, err)
		}
		w.Lat = append(w.Lat, Now()-t)
	}
	w.End = Now()
	slices.Sort(w.Lat)
	f.Close()
	r, err := ProbeRead(name+".randread", path, seed)
	return w, r, err
}

// ioProbe runs the probes ukernel perf asks for: random reads of the root partition, and random
// writes and reads on the data volume when one is mounted, else on the tmpfs behind the overlay.
// Results and failures are events; the probe never fails the run.
func (in *pid1) ioProbe() {
	start := Now()
	report := func(err error) {
		in.events.Emit(abi.Event{Type: abi.EventProbe, Name: "error", Message: err.Error()})
	}
	if in.rootPart.Name != "" {
		if r, err := ProbeRead("root.randread", "/dev/"+in.rootPart.Name, 1); err != nil {
			report(err)
		} else {
			in.events.Emit(r.Event())
		}
	}
	name, dir := "tmpfs", in.layout.RW
	if data := filepath.Join(in.layout.Root, abi.DataDir); isMountPoint(data) {
		name, dir = "data", data
	}
	if w, r, err := ProbeWriteRead(name, dir, 1); err != nil {
		report(err)
	} else {
		in.events.Emit(w.Event())
		in.events.Emit(r.Event())
	}
	in.events.Phase("ioprobe", start)
}

// isMountPoint reports whether dir is on another filesystem than its parent.
func isMountPoint(dir string) bool {
	var a, b unix.Stat_t
	if unix.Stat(dir, &a) != nil || unix.Stat(filepath.Dir(dir), &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}
