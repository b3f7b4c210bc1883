package snapshot

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzRead feeds snapshot.json through Read: an error, or a Meta whose files all lie in the
// snapshot's directory.
func FuzzRead(f *testing.F) {
	f.Add([]byte(`{"version":1,"files":[{"name":"state","size":3,"sha256":"ab"},{"name":"memory","size":4096}],"config_size":512,"env":{"A":"b"},"ready":"healthy","ready_ms":9}`))
	f.Add([]byte(`{"version":1,"files":[{"name":"../../etc/passwd","size":1}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"files":[{"name":"."}]}`))
	f.Add([]byte(`{"version":1,"created":"2026-12-03T11:00:00Z","fingerprint":{"vcpu":1,"memory_mb":512}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, MetaFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := Read(dir)
		if err != nil {
			return
		}
		for _, fl := range m.Files {
			if p := filepath.Join(dir, fl.Name); filepath.Dir(p) != dir || fl.Size < 0 {
				t.Fatalf("file %q (%d bytes) accepted", fl.Name, fl.Size)
			}
		}
		m.Size()
		if Verify(dir, m) == nil && len(m.Files) > 0 {
			t.Fatalf("files %v verified in an empty directory", m.Files)
		}
	})
}
