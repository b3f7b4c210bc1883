package suggest

import (
	"slices"
	"testing"
)

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"build", "build", 0},
		{"buidl", "build", 1}, // swap
		{"detatch", "detach", 1},
		{"kitten", "sitting", 3},
		{"vcpus", "vcpu", 1},
		{"ca", "abc", 3}, // optimal string alignment: no edit of a swapped pair
		{"héllo", "hello", 1},
	} {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := Distance(tc.b, tc.a); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d (symmetry)", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestClosest(t *testing.T) {
	flags := []string{"detach", "name", "publish", "accel", "env", "json", "dir"}
	for _, tc := range []struct {
		typed string
		want  []string
	}{
		{"detatch", []string{"detach"}},
		{"DETACH", []string{"detach"}},
		{"detach", nil},
		{"pubilsh", []string{"publish"}},
		{"nmae", []string{"name"}},
		{"x", nil},
		{"accelerate", nil},
		{"dri", []string{"dir"}},
		{"jsn", []string{"json"}},
		{"eny", []string{"env"}},
	} {
		if got := Closest(tc.typed, flags); !slices.Equal(got, tc.want) {
			t.Errorf("Closest(%q) = %q, want %q", tc.typed, got, tc.want)
		}
	}
	if got := Closest("ab", []string{"ac", "ad", "abcd"}); !slices.Equal(got, []string{"ac", "ad"}) {
		t.Errorf("ties: %q", got)
	}
}

func TestPhrase(t *testing.T) {
	q := func(s string) string { return "--" + s }
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"detach"}, "did you mean --detach?"},
		{[]string{"a", "b", "c"}, "did you mean --a, --b or --c?"},
	} {
		if got := Phrase(tc.in, q); got != tc.want {
			t.Errorf("Phrase(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
