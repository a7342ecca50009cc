package main

import (
	"strings"
	"testing"
)

// Wrong flags of ficus outbox relay are usage errors (exit 2) that name
// the flag, before anything starts.
func TestOutboxRelayUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"outbox", "relay", "--database-url", "postgres://127.0.0.1:1/x"}, "--sink is required"},
		{[]string{"outbox", "relay", "--sink", "null:", "--database-url", "postgres://127.0.0.1:1/x", "--mode", "queue"}, "use message or table"},
		{[]string{"outbox", "relay", "--sink", "null:"}, "--database-url"},
		{[]string{"outbox", "relay", "--sink", "null:", "--database-url", "postgres://%zz"}, "--database-url"},
	} {
		code, _, errOut := ficus(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("ficus %v: exit %d, stderr %q; want 2 naming %q", tc.args, code, errOut, tc.want)
		}
	}
}
