package deploy

import (
	"strings"
	"testing"
	"time"
)

// TestHealthy: a guest whose checks have not reported yet is not healthy, however long it has
// run (a guest's health map is empty until its first check reports).
func TestHealthy(t *testing.T) {
	long := int64(settle / time.Second * 10)
	for _, c := range []struct {
		g      Guest
		checks []string
		want   bool
	}{
		{Guest{UptimeS: long}, []string{"main"}, false},
		{Guest{UptimeS: long, Health: map[string]string{"main": "starting"}}, []string{"main"}, false},
		{Guest{UptimeS: 0, Health: map[string]string{"main": "healthy"}}, []string{"main"}, true},
		{Guest{Health: map[string]string{"main": "healthy"}}, []string{"main", "db"}, false},
		{Guest{Health: map[string]string{"main": "healthy", "db": "healthy"}}, []string{"main", "db"}, true},
		{Guest{UptimeS: 1}, nil, false},
		{Guest{UptimeS: long}, nil, true},
	} {
		if got := healthy(&c.g, c.checks); got != c.want {
			t.Errorf("healthy(%+v, %v) = %v", c.g, c.checks, got)
		}
	}
}

// A hostile host's answer reaches the user's terminal only with its control sequences escaped,
// and only its start.
func TestExcerptNeutralises(t *testing.T) {
	if got := excerpt([]byte("\x1b]0;owned\x07\x1b[2Jok")); got != `\x1b]0;owned\x07\x1b[2Jok` {
		t.Errorf("excerpt = %q", got)
	}
	if got := excerpt([]byte(strings.Repeat("a", 500))); got != strings.Repeat("a", 200)+"..." {
		t.Errorf("long answer: %d bytes", len(got))
	}
}
