package main

import (
	"strings"
	"testing"

	"github.com/ficuslabs/ficus/internal/pgtest"
)

func TestMigrateDownTo(t *testing.T) {
	db := pgtest.New(t)
	t.Setenv("FICUS_DATABASE_URL", db.URL)
	for _, args := range [][]string{
		{"migrate", "down"}, // no --to
		{"migrate", "down", "--to", "-1"},
		{"migrate", "down", "--to", "1", "--set", "nope"},
	} {
		if code, _, errOut := ficus(t, args...); code != 2 {
			t.Errorf("ficus %v: exit %d, %q; want 2", args, code, errOut)
		}
	}
	if code, out, errOut := ficus(t, "migrate", "up"); code != 0 {
		t.Fatalf("up: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := ficus(t, "migrate", "down", "--to", "2")
	if code != 0 || !strings.Contains(out, "rolled back 00003 00003_order_view.sql") || !strings.Contains(out, "rolled back 00004 00004_proxy_intake.sql") {
		t.Fatalf("down --to 2: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = ficus(t, "migrate", "status")
	if code != 0 || !strings.Contains(out, "2 pending") {
		t.Fatalf("status after down: exit %d\n%s", code, out)
	}
	if code, out, _ = ficus(t, "migrate", "down", "--to", "2"); code != 0 || !strings.Contains(out, "nothing to roll back") {
		t.Fatalf("second down --to 2: exit %d\n%s", code, out)
	}
}
