package lock

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/pypi"
)

func sampleLock() *Lock {
	return &Lock{
		Version: FormatVersion, Base: "python-3.11",
		Request:  Request{Base: "python-3.11", Kernel: "linux-image-cloud-amd64", System: []string{"curl"}, Python: []string{"requests==2.32.3"}},
		Archives: []Archive{{Origin: "Debian", Suite: "stable", Codename: "bookworm", Date: "2026-01-10T11:11:11Z", Index: "main/binary-amd64/Packages.xz", IndexSHA256: "ab"}},
		Packages: []Package{{Name: "curl", Version: "7.88.1-10", Architecture: "amd64", Filename: "pool/main/c/curl/curl_7.88.1-10_amd64.deb", Size: 315, SHA256: "cd", Suite: "bookworm"}},
		Kernel:   &Package{Name: "linux-image-6.1.0-57-cloud-amd64", Version: "6.1.192-3", Architecture: "amd64", SHA256: "ef"},
		Python:   []pypi.Wheel{{Name: "requests", Version: "2.32.3", Filename: "requests-2.32.3-py3-none-any.whl", SHA256: strings.Repeat("01", 32), Size: 64}},
	}
}

// digestPlaceholder in a fuzz input is replaced by the digest of what the input decodes to, so
// that mutations of the content reach the checks after the digest.
const digestPlaceholder = `"FIX"`

func withDigest(data []byte) []byte {
	if !bytes.Contains(data, []byte(digestPlaceholder)) {
		return data
	}
	var l Lock
	if json.NewDecoder(bytes.NewReader(data)).Decode(&l) != nil {
		return data
	}
	d, err := l.contentDigest()
	if err != nil {
		return data
	}
	return bytes.Replace(data, []byte(digestPlaceholder), []byte(`"`+d+`"`), 1)
}

// FuzzParseLock: a lock file is accepted only if encoding/json reads the same lock from it (the
// whole file, nothing after the object), and what is accepted writes back canonically: Marshal
// of the result parses to the same lock, and writing that again gives the same bytes.
func FuzzParseLock(f *testing.F) {
	good, err := sampleLock().Marshal()
	if err != nil {
		f.Fatal(err)
	}
	var l Lock
	must(f, json.Unmarshal(good, &l))
	l.Digest = "FIX"
	fix, err := json.Marshal(&l)
	must(f, err)
	fix = bytes.Replace(fix, []byte(`"FIX"`), []byte(digestPlaceholder), 1)
	f.Add(good)
	f.Add(fix)
	f.Add(append(bytes.Clone(fix), "\n{\"version\": 2}"...))
	f.Add([]byte(`{"version": 1, "digest": "FIX", "Packages": [{"NAME": "a"}], "packages": null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		data = withDigest(data)
		got, err := Parse(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), project.LockFile+": ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, w := range got.Python {
			// The line pypi.Fetch gives pip: the lock must not add options or requirements.
			if line := w.Name + "==" + w.Version + " --hash=sha256:" + w.SHA256; len(strings.Fields(line)) != 2 || strings.ContainsAny(line, "#;@") {
				t.Fatalf("accepted wheel %+v: requirement line %q", w, line)
			}
		}
		var want Lock
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("accepted a lock encoding/json refuses: %v", err)
		}
		if !reflect.DeepEqual(*got, want) {
			t.Fatalf("differs from encoding/json:\n got %+v\nwant %+v", *got, want)
		}
		out, err := got.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("written back, the lock does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, got)
		}
		if out2, _ := again.Marshal(); !bytes.Equal(out2, out) {
			t.Fatalf("Marshal is not canonical:\n%s\n%s", out, out2)
		}
	})
}

// TestParseRefusesTrailingContent: a second object after the lock (a merge that kept both
// sides whole) is an error; it was ignored, the first lock used.
func TestParseRefusesTrailingContent(t *testing.T) {
	good, err := sampleLock().Marshal()
	must(t, err)
	if _, err := Parse(good); err != nil {
		t.Fatalf("the lock itself: %v", err)
	}
	for _, tail := range []string{"{\"version\": 2}\n", "}", "x", "null"} {
		_, err := Parse(append(bytes.Clone(good), tail...))
		if err == nil || !strings.Contains(err.Error(), "content after the lock's closing brace") {
			t.Errorf("lock followed by %q: %v", tail, err)
		}
	}
	if _, err := Parse(append(bytes.Clone(good), " \n\t\n"...)); err != nil {
		t.Errorf("trailing white space: %v", err)
	}
}

// TestParseRefusesForeignWheels: a lock's digest is anyone's to recompute; a wheel record that
// Download would not have written is refused. Its name and version went into pip's
// requirements file, where "1.0 --index-url=..." chose the index.
func TestParseRefusesForeignWheels(t *testing.T) {
	for _, edit := range []func(w *pypi.Wheel){
		func(w *pypi.Wheel) { w.Version = "2.32.3 --index-url=http://127.0.0.1:9/simple" },
		func(w *pypi.Wheel) { w.Name = "requests\n--trusted-host=x" },
		func(w *pypi.Wheel) { w.Filename = "../requests-2.32.3-py3-none-any.whl" },
		func(w *pypi.Wheel) { w.Filename = "flask-3.0-py3-none-any.whl" },
		func(w *pypi.Wheel) { w.SHA256 = "01" },
	} {
		l := sampleLock()
		edit(&l.Python[0])
		data, err := l.Marshal()
		must(t, err)
		if _, err := Parse(data); err == nil || !strings.Contains(err.Error(), "wheel") {
			t.Errorf("wheel %+v: %v", l.Python[0], err)
		}
	}
	good, err := sampleLock().Marshal()
	must(t, err)
	if _, err := Parse(good); err != nil {
		t.Fatal(err)
	}
}
