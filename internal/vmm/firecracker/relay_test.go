package firecracker

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEventRelayDrained: the guest's last events (the workload's exit) arrive just before
// Firecracker exits; once the relay is closed the events file must hold all of them, including
// those of a connection still waiting to be accepted.
func TestEventRelayDrained(t *testing.T) {
	dir := t.TempDir()
	for i := range 200 {
		sock := filepath.Join(dir, fmt.Sprintf("ev%d.sock", i))
		events := filepath.Join(dir, fmt.Sprintf("events%d.jsonl", i))
		r, err := listenEvents(sock, events, slog.Default())
		if err != nil {
			t.Fatal(err)
		}
		go r.run()
		var want []string
		// Two connections, as a guest that reconnects: the second waits in the backlog while
		// the first is copied. Firecracker closes both when it exits.
		for c := range 2 {
			conn, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			var sb strings.Builder
			for n := range 200 {
				line := fmt.Sprintf(`{"type":"log","conn":%d,"n":%d}`, c, n)
				sb.WriteString(line + "\n")
				want = append(want, line)
			}
			if c == 1 {
				sb.WriteString(`{"type":"poweroff","code":3}` + "\n")
				want = append(want, `{"type":"poweroff","code":3}`)
			}
			if _, err := conn.Write([]byte(sb.String())); err != nil {
				t.Fatal(err)
			}
			conn.Close()
		}
		r.close() // as wait does once Firecracker has exited
		data, err := os.ReadFile(events)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSuffix(string(data), "\n"); got != strings.Join(want, "\n") {
			lines := strings.Split(got, "\n")
			t.Fatalf("iteration %d: %d of %d lines relayed, the last %q", i, len(lines), len(want), lines[len(lines)-1])
		}
	}
}
