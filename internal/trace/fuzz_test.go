package trace

import (
	"io"
	"testing"
	"time"
)

// FuzzAssemble feeds events.jsonl, which the guest writes, through ParseEvents and Assemble
// and renders the trace each way: spans nest whatever the guest claimed, and whatever stamp a
// line the host read carried (its console's are the guest's to write).
func FuzzAssemble(f *testing.F) {
	f.Add([]byte(bootEvents), int64(2_973_836_000), int64(322_772_000), int64(700_000_000))
	f.Add([]byte(`{"type":"phase","t_ns":5,"name":"init","start_ns":9,"dur_ns":-7}`+"\n"+`{"type":"entry.exit","t_ns":-1}`), int64(0), int64(0), int64(0))
	f.Add([]byte(`{"type":"hello","t_ns":9223372036854775807}`+"\n"+`{"type":"poweroff","t_ns":1,"code":3}`+"\n{\"ty"), int64(-1), int64(1<<62), int64(-1<<40))
	f.Fuzz(func(t *testing.T, events []byte, consoleEnd, readGuest, readAfter int64) {
		evs, _ := ParseEvents(events)
		// readAfter: when the host read the line, after QEMU's spawn (within a day either way).
		host := spawn.UnixNano() + readAfter%(24*int64(time.Hour))
		tr := Assemble("r", hostSpans(), nil, evs, consoleEnd, []Reading{{Guest: readGuest, Host: host}})
		CheckNesting(t, tr.Root)
		for _, w := range []func(io.Writer, *Trace) error{WriteTree, WriteChrome, WriteOTLP} {
			if err := w(io.Discard, tr); err != nil {
				t.Fatal(err)
			}
		}
	})
}
