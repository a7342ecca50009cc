package pricing_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/solids"
)

func openStore(t *testing.T, url string, cfg pricing.StoreConfig) *pricing.Store {
	t.Helper()
	s, err := pricing.OpenStore(t.Context(), url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func fileStore(t *testing.T, cfg pricing.StoreConfig) (*pricing.Store, string) {
	t.Helper()
	dir := t.TempDir()
	return openStore(t, "file://"+filepath.ToSlash(dir)+"?metadata=skip", cfg), dir
}

func TestResolve(t *testing.T) {
	t.Parallel()
	fs, dir := fileStore(t, pricing.StoreConfig{})
	d := filepath.ToSlash(dir)
	good := map[string]string{
		"a.stl":                          "a.stl",
		"parts/acme/bracket-0001.stl":    "parts/acme/bracket-0001.stl",
		"file://" + d + "/parts/x_1.stl": "parts/x_1.stl",
		"FILE://" + d + "/y.stl":         "y.stl",
		fs.URL("z/z.stl"):                "z/z.stl",
		"...stl":                         "...stl",
	}
	for in, want := range good {
		if got, err := fs.Resolve(in); err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{
		"", "/etc/passwd", "../secret.stl", "a/../../b.stl", "a/./b.stl", "a//b.stl", "a/", "./a.stl", "..",
		`a\..\b.stl`, "a\x00.stl", "a%2e%2e/b.stl", "%2e%2e/x", "a%2fb.stl", "a b.stl", "a\n.stl", "ü.stl",
		"s3://models/a.stl", "https://evil.example/a.stl", "file:///etc/passwd", "file://" + d + "/../x.stl",
		"file://" + d + "x/a.stl", "file://" + d, "file://" + d + "/", "file://host" + d + "/a.stl",
		"file://" + d + "/a.stl?x=1", "file://" + d + "/a.stl#f", "file://u:p@" + d + "/a.stl",
		"file:" + d + "/a.stl", "c:/a.stl", "javascript:alert(1)", strings.Repeat("a/", 600) + "a.stl",
		"file://" + d + "/a/%2e%2e/%2e%2e/etc/passwd",
	}
	for _, in := range bad {
		if got, err := fs.Resolve(in); !errors.Is(err, pricing.ErrRejected) {
			t.Errorf("Resolve(%q) = %q, %v; want ErrRejected", in, got, err)
		}
	}
}

func TestResolveBucketStore(t *testing.T) {
	t.Parallel()
	// A store's URL is scheme://bucket/dir; resolving only needs the
	// parsed URL, so a mem:// store with a host and a path stands in for
	// s3://bucket/dir.
	s := openStore(t, "mem://models/shop", pricing.StoreConfig{})
	if got, err := s.Resolve("mem://models/shop/a.stl"); err != nil || got != "a.stl" {
		t.Errorf("own URL: %q %v", got, err)
	}
	for _, in := range []string{"mem://other/shop/a.stl", "mem://models/a.stl", "mem://models/shopx/a.stl", "s3://models/shop/a.stl"} {
		if _, err := s.Resolve(in); !errors.Is(err, pricing.ErrRejected) {
			t.Errorf("Resolve(%q): %v, want ErrRejected", in, err)
		}
	}
	if u := s.URL("a/b.stl"); u != "mem://models/shop/a/b.stl" {
		t.Errorf("URL = %q", u)
	}
}

func FuzzResolve(f *testing.F) {
	for _, s := range []string{"a.stl", "parts/b.stl", "mem://models/dir/a.stl", "mem://models/dir/../a.stl",
		"../a", "a%2F..", "mem://models/dir/a.stl?x", "mem://Models/dir/a.stl", "a\\b", "/a", "a//b"} {
		f.Add(s)
	}
	s, err := pricing.OpenStore(context.Background(), "mem://models/dir", pricing.StoreConfig{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in string) {
		key, err := s.Resolve(in)
		if err != nil {
			if !errors.Is(err, pricing.ErrRejected) {
				t.Fatalf("error %v does not wrap ErrRejected", err)
			}
			return
		}
		// An accepted key is clean: relative, no traversal, no escapes.
		if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") || strings.Contains(key, "//") ||
			strings.ContainsAny(key, "%\\\x00:?#") || filepath.Clean(key) != filepath.FromSlash(key) {
			t.Fatalf("Resolve(%q) = %q, an unclean key", in, key)
		}
		for seg := range strings.SplitSeq(key, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("Resolve(%q) = %q has a %q segment", in, key, seg)
			}
		}
		// And it round-trips through the store's own URL.
		if again, err := s.Resolve(s.URL(key)); err != nil || again != key {
			t.Fatalf("Resolve(URL(%q)) = %q, %v", key, again, err)
		}
	})
}

func TestStoreLoadsWhatWasPut(t *testing.T) {
	t.Parallel()
	s, _ := fileStore(t, pricing.StoreConfig{})
	stl, err := solids.Box(20, 30, 40)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "parts/box.stl", stl); err != nil {
		t.Fatal(err)
	}
	m, err := s.Load(t.Context(), "parts/box.stl")
	if err != nil {
		t.Fatal(err)
	}
	if m.Key != "parts/box.stl" || len(m.Data) != len(stl) || m.Analysis.Triangles != 12 || m.Analysis.Volume < 23999.99 || m.Analysis.Volume > 24000.01 {
		t.Errorf("loaded %q, %d bytes, %+v", m.Key, len(m.Data), m.Analysis)
	}
	for _, key := range []string{"../x.stl", "", "/abs.stl", "a//b.stl"} {
		if err := s.Put(t.Context(), key, stl); !errors.Is(err, pricing.ErrRejected) {
			t.Errorf("Put(%q): %v, want ErrRejected", key, err)
		}
		if _, err := s.Load(t.Context(), key); !errors.Is(err, pricing.ErrRejected) {
			t.Errorf("Load(%q): %v, want ErrRejected", key, err)
		}
	}
}

func TestStoreLoadRefusesHostileFiles(t *testing.T) {
	t.Parallel()
	s, dir := fileStore(t, pricing.StoreConfig{MaxBytes: 2000, MaxTriangles: 20})
	stl, _ := solids.Box(1, 1, 1)
	cyl, _ := solids.Cylinder(10, 10, 32) // 6,484 bytes
	outside := filepath.Join(t.TempDir(), "secret.stl")
	if err := os.WriteFile(outside, stl, 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		t.Helper()
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("ok.stl", stl)
	write("big.stl", cyl)
	write("claims.stl", append(append([]byte{}, stl[:80]...), 0xff, 0xff, 0xff, 0x7f)) // 2³¹ triangles claimed
	write("short.stl", stl[:100])
	write("empty.stl", nil)
	write("model.xyz", []byte("0 0 0\n"))
	if err := os.Symlink(outside, filepath.Join(dir, "link.stl")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(outside), filepath.Join(dir, "linkdir")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("ok.stl", filepath.Join(dir, "inside.stl")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "dir.stl"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(t.Context(), "ok.stl"); err != nil {
		t.Fatalf("a good model: %v", err)
	}
	// A link that stays inside the store is read as its target.
	if _, err := s.Load(t.Context(), "inside.stl"); err != nil {
		t.Errorf("a link inside the store: %v", err)
	}
	tests := map[string]string{
		"missing.stl":        "not in the model store",
		"big.stl":            "more than the limit",
		"claims.stl":         "triangles",
		"short.stl":          "malformed",
		"empty.stl":          "malformed",
		"model.xyz":          "unsupported",
		"link.stl":           "link out of the model store",
		"linkdir/secret.stl": "link out of the model store",
		"dir.stl":            "not a regular file",
	}
	for key, says := range tests {
		_, err := s.Load(t.Context(), key)
		if !errors.Is(err, pricing.ErrRejected) || !strings.Contains(err.Error(), says) {
			t.Errorf("Load(%q): %v, want ErrRejected saying %q", key, err, says)
		}
	}
	// The limit holds at its edge: 684 bytes pass a 684-byte limit and
	// fail a 683-byte one.
	exact, edir := fileStore(t, pricing.StoreConfig{MaxBytes: int64(len(stl))})
	if err := os.WriteFile(filepath.Join(edir, "ok.stl"), stl, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := exact.Load(t.Context(), "ok.stl"); err != nil {
		t.Errorf("a model exactly at the limit: %v", err)
	}
	small, sdir := fileStore(t, pricing.StoreConfig{MaxBytes: int64(len(stl)) - 1})
	if err := os.WriteFile(filepath.Join(sdir, "ok.stl"), stl, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := small.Load(t.Context(), "ok.stl"); !errors.Is(err, pricing.ErrRejected) {
		t.Errorf("a model a byte over the limit: %v", err)
	}
}

func TestOpenStoreErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, u := range []string{"", "not a url", "ftp://host/x", "file://" + filepath.ToSlash(filepath.Join(t.TempDir(), "missing"))} {
		if s, err := pricing.OpenStore(ctx, u, pricing.StoreConfig{}); err == nil {
			s.Close()
			t.Errorf("OpenStore(%q) opened", u)
		}
	}
	s, err := pricing.OpenStore(ctx, "file://"+filepath.ToSlash(filepath.Join(t.TempDir(), "new"))+"?create_dir=1", pricing.StoreConfig{})
	if err != nil {
		t.Fatalf("create_dir: %v", err)
	}
	s.Close()
}
