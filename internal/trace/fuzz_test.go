package trace

import (
	"io"
	"testing"
)

// FuzzAssemble feeds events.jsonl, which the guest writes, through ParseEvents and Assemble
// and renders the trace each way: spans nest whatever the guest claimed.
func FuzzAssemble(f *testing.F) {
	f.Add([]byte(bootEvents), int64(2_973_836_000))
	f.Add([]byte(`{"type":"phase","t_ns":5,"name":"init","start_ns":9,"dur_ns":-7}`+"\n"+`{"type":"entry.exit","t_ns":-1}`), int64(0))
	f.Add([]byte(`{"type":"hello","t_ns":9223372036854775807}`+"\n"+`{"type":"poweroff","t_ns":1,"code":3}`+"\n{\"ty"), int64(-1))
	f.Fuzz(func(t *testing.T, events []byte, consoleEnd int64) {
		evs, _ := ParseEvents(events)
		tr := Assemble("r", hostSpans(), nil, evs, consoleEnd, []Reading{{Guest: consoleEnd, Host: spawn.UnixNano() + consoleEnd/2}})
		CheckNesting(t, tr.Root)
		for _, w := range []func(io.Writer, *Trace) error{WriteTree, WriteChrome, WriteOTLP} {
			if err := w(io.Discard, tr); err != nil {
				t.Fatal(err)
			}
		}
	})
}
