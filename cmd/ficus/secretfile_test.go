package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --database-url-file reads the URL from a file (a mounted secret), a
// final newline dropped.
func TestSecretFileFlag(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "database-url")
	if err := os.WriteFile(file, []byte("postgres://ficus@127.0.0.1:1/ficus?connect_timeout=2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := ficusWithEnv(map[string]string{"FICUS_DATABASE_URL_FILE": file}, "migrate", "status")
	if code != 1 || !strings.Contains(errOut, "127.0.0.1:1") {
		t.Fatalf("exit %d, %q; want a failed connection to the file's 127.0.0.1:1", code, errOut)
	}
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, make([]byte, maxSecretFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := ficusWithEnv(nil, "migrate", "status", "--database-url-file", big); code != 2 || !strings.Contains(errOut, "larger than") {
		t.Fatalf("a large file: exit %d, %q", code, errOut)
	}
}

// A database URL without a password takes it from PGPASSWORD, else from
// the password file (PGPASSFILE or ~/.pgpass), as libpq does; pgx parses
// them, and ficus lets it.
func TestDatabasePasswordFromPGEnvironment(t *testing.T) {
	t.Setenv("PGPASSWORD", "from-env")
	cfg, err := parseDatabaseURL("postgres://ficus@db.internal:5432/shop")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ConnConfig.Password != "from-env" {
		t.Fatalf("password %q, want PGPASSWORD's", cfg.ConnConfig.Password)
	}
	if cfg, _ := parseDatabaseURL("postgres://ficus:in-url@db.internal:5432/shop"); cfg.ConnConfig.Password != "in-url" {
		t.Fatalf("password %q; want the URL's to win", cfg.ConnConfig.Password)
	}

	t.Setenv("PGPASSWORD", "")
	os.Unsetenv("PGPASSWORD")
	pass := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(pass, []byte("other.internal:5432:*:*:wrong\ndb.internal:5432:shop:ficus:from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGPASSFILE", pass)
	cfg, err = parseDatabaseURL("postgres://ficus@db.internal:5432/shop")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ConnConfig.Password != "from-file" {
		t.Fatalf("password %q, want the password file's", cfg.ConnConfig.Password)
	}
	// PGHOST, PGUSER and friends fill what the URL leaves out.
	t.Setenv("PGUSER", "ficus")
	t.Setenv("PGDATABASE", "shop")
	t.Setenv("PGHOST", "db.internal")
	if cfg, err = parseDatabaseURL("postgres:///?sslmode=disable"); err != nil || cfg.ConnConfig.Host != "db.internal" || cfg.ConnConfig.Password != "from-file" {
		t.Fatalf("from PG* variables: %v, host %q, password %q", err, cfg.ConnConfig.Host, cfg.ConnConfig.Password)
	}
}
