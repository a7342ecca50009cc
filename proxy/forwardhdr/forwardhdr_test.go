package forwardhdr

import (
	"net/http"
	"testing"
)

func TestDrop(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name              string
		drop, underscores bool
	}{
		{"Content-Type", false, false},
		{"X-Request-Id", true, false},
		{"X-Ficus-Tenant", true, false},
		{"X-Api-Key", true, false},
		{"Forwarded", true, false},
		{"X-Forwarded-For", true, false},
		{"X_custom", true, false},
		{"X_custom", false, true},
		{"X_ficus_tenant", true, true},
		{"X_forwarded_for", true, true},
		{"X-Ficus_Tenant", true, true},
	} {
		if got := (Rules{Underscores: c.underscores}).Drop(c.name); got != c.drop {
			t.Errorf("Underscores %t: Drop(%q) = %t, want %t", c.underscores, c.name, got, c.drop)
		}
	}
}

func TestHopByHop(t *testing.T) {
	t.Parallel()
	conn := []string{"X-A, keep-alive"}
	for name, want := range map[string]bool{"Connection": true, "Te": true, "X-A": true, "Keep-Alive": true, "X-B": false} {
		if got := HopByHop(name, conn); got != want {
			t.Errorf("HopByHop(%q) = %t, want %t", name, got, want)
		}
	}
	h := http.Header{"Connection": {"X-A"}, "X-A": {"1"}, "Upgrade": {"x"}, "X-B": {"2"}}
	RemoveHopByHop(h)
	if len(h) != 1 || h.Get("X-B") != "2" {
		t.Errorf("after RemoveHopByHop: %v", h)
	}
}

func TestXForwarded(t *testing.T) {
	t.Parallel()
	r := &http.Request{RemoteAddr: "192.0.2.1:5555", Host: "api.example", Header: http.Header{"X-Forwarded-For": {"203.0.113.9"}}}
	forIP, host, proto := XForwarded(r)
	if forIP != "192.0.2.1" || host != "api.example" || proto != "http" {
		t.Errorf("XForwarded = %q %q %q", forIP, host, proto)
	}
}
