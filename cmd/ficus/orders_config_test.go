package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A bad --config is a usage error naming the file, the line and the fix,
// before anything connects.
func TestOrdersServeConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "orders.yaml")
	if err := os.WriteFile(bad, []byte("drift_grace: 5m\nstatus_limits:\n  mes: {printing: soon}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", bad}, `orders.yaml: orders: invalid config: line 3: "soon" is not a duration`},
		{[]string{"--config", filepath.Join(dir, "none.yaml")}, "no such file"},
		{[]string{"--config", "../../orders/testdata/config.yaml", "--drift-grace", "-1s"}, "--drift-grace must be positive"},
	} {
		args := append([]string{"orders", "serve", "--database-url", "postgres://127.0.0.1:1/none", "--metrics-listen", "127.0.0.1:0"}, tc.args...)
		code, _, errOut := ficus(t, args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("ficus %s: exit %d, stderr %q; want 2 and %q", strings.Join(args, " "), code, errOut, tc.want)
		}
	}
}
