package debian

import (
	"reflect"
	"testing"
)

// FuzzFindPackages: the targeted scan the proof uses finds exactly the stanzas the full parser
// finds for the names asked.
func FuzzFindPackages(f *testing.F) {
	f.Add([]byte("Package: dash\nVersion: 0.5.12-2\nArchitecture: amd64\nSHA256: ab\n\nPackage: coreutils\nVersion: 9.1-1\n"), "coreutils")
	f.Add([]byte("Version: 1\nPackage: dash\n\n\n\nPackage: dash\nVersion: 2\n"), "dash")
	f.Add([]byte("Package: a\n Version: 1\n"), "a")
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		all, err := ParsePackages(data)
		got, gotErr := FindPackages(data, map[string]bool{name: true})
		if err != nil {
			return // the scan may skip a broken stanza the full parser refuses
		}
		if gotErr != nil {
			t.Fatalf("FindPackages failed where ParsePackages did not: %v", gotErr)
		}
		var want []Package
		for _, p := range all {
			if p.Name == name {
				want = append(want, p)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("FindPackages(%q) = %+v, ParsePackages gives %+v", name, got, want)
		}
	})
}
