package main

import (
	"strings"
	"testing"
)

func TestPricingCommandsRefuseBadFlags(t *testing.T) {
	t.Setenv("FICUS_DATABASE_URL", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pricing", "worker", "--lane", "vip", "--database-url", "postgres://127.0.0.1:1/x"}, "--lane"},
		{[]string{"pricing", "worker", "--lane", "b2b", "--concurrency", "0", "--database-url", "postgres://127.0.0.1:1/x"}, "--concurrency"},
		{[]string{"pricing", "worker", "--lane", "b2b"}, "--database-url"},
		{[]string{"pricing", "api", "--default-lane", "b2x"}, "--default-lane"},
		{[]string{"pricing", "api", "--tenant-lane", "shop=vip"}, "--tenant-lane"},
		{[]string{"pricing", "api"}, "--database-url"},
	} {
		code, _, stderr := ficus(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("ficus %s: exit %d, %q; want 2 naming %s", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
}

func TestModelKey(t *testing.T) {
	for in, ok := range map[string]bool{
		"parts/bracket.stl": true,
		"cube.stl":          true,
		"":                  false,
		"/etc/passwd":       false,
		"../secret.stl":     false,
		"parts/../../x":     false,
		"file:///etc/x":     false,
		"s3://other/x.stl":  false,
		"//host/x":          false,
		"a\\..\\b":          false,
		"a.stl?x=1":         false,
		"./a.stl":           false,
	} {
		key, err := modelKey(in)
		if (err == nil) != ok || (ok && key != in) {
			t.Errorf("modelKey(%q) = %q, %v; want ok=%v", in, key, err, ok)
		}
	}
}

func FuzzModelKey(f *testing.F) {
	for _, s := range []string{"parts/a.stl", "../a", "/a", "a/../b", "%2e%2e/a", "a//b", "s3://b/k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		key, err := modelKey(s)
		if err != nil {
			return
		}
		if strings.HasPrefix(key, "/") || key == ".." || strings.HasPrefix(key, "../") || strings.Contains(key, "/../") || strings.Contains(key, "://") {
			t.Fatalf("modelKey(%q) accepted %q, which escapes the store", s, key)
		}
	})
}
