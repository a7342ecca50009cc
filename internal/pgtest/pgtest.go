// Package pgtest gives each test its own database on a real PostgreSQL
// server with wal_level=logical.
//
// The server is found once per test binary the way ficus demo finds one
// (see package pgserver): FICUS_TEST_DATABASE_URL if set, else a container
// from FICUS_POSTGRES_IMAGE when Docker is reachable, else a throwaway
// cluster from local PostgreSQL binaries. With none of them the test fails
// and says what to install; it never skips silently.
//
// A package that uses pgtest declares
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// so that the server it started is stopped when the package's tests end.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/internal/pgserver"
)

// PartitionedSQL creates, for tests of partitioned tables, the table
// t2.parent (id bigint PRIMARY KEY, v bigint NOT NULL) hash-partitioned by
// id in two: t2.p_eu (remainder 0) and t2.p_us (remainder 1).
const PartitionedSQL = `
CREATE SCHEMA t2;
CREATE TABLE t2.parent (id bigint PRIMARY KEY, v bigint NOT NULL) PARTITION BY HASH (id);
CREATE TABLE t2.p_eu PARTITION OF t2.parent FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE t2.p_us PARTITION OF t2.parent FOR VALUES WITH (MODULUS 2, REMAINDER 1);
`

// DB is one test's database.
type DB struct {
	// Name of the database.
	Name string
	// URL connects to it as a superuser.
	URL string
	// Pool is open on it and closed in t.Cleanup.
	Pool *pgxpool.Pool
}

var shared struct {
	once sync.Once
	srv  *pgserver.Server
	err  error
}

func server() (*pgserver.Server, error) {
	shared.once.Do(func() {
		shared.srv, shared.err = pgserver.Start(context.Background(), pgserver.Config{
			URL: os.Getenv("FICUS_TEST_DATABASE_URL"),
		})
	})
	return shared.srv, shared.err
}

// Main runs the package's tests, then the cleanups, stops the server the
// tests used and exits.
func Main(m *testing.M, cleanups ...func()) {
	code := m.Run()
	for _, c := range cleanups {
		c()
	}
	if shared.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := shared.srv.Stop(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop postgres: %v\n", err)
		}
		cancel()
	}
	os.Exit(code)
}

// Server returns the shared server's superuser URL, starting it if needed.
func Server(t testing.TB) string {
	t.Helper()
	srv, err := server()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return srv.URL
}

// New creates a fresh, empty database for t and drops it when t ends,
// together with any replication slots left in it.
func New(t testing.TB) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	admin := Server(t)
	name := "ficus_test_" + randomHex(6)
	if err := exec(ctx, admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	dbURL, err := withDatabase(admin, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", name, err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := drop(ctx, admin, name); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return &DB{Name: name, URL: dbURL, Pool: pool}
}

// Role creates a role for t with the given attributes (for example
// "LOGIN REPLICATION PASSWORD 'pw'") and returns its name, unique on the
// server. When t ends, the role's objects and privileges in db are dropped,
// and then the role.
func (db *DB) Role(t testing.TB, attrs string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "ficus_role_" + randomHex(6)
	if _, err := db.Pool.Exec(ctx, "CREATE ROLE "+name+" "+attrs); err != nil {
		t.Fatalf("pgtest: create role: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := exec(ctx, db.URL, "DROP OWNED BY "+name+"; DROP ROLE "+name); err != nil {
			t.Errorf("pgtest: drop role %s: %v", name, err)
		}
	})
	return name
}

func drop(ctx context.Context, admin, name string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	// Walsenders hold slots active; end them, then drop the slots, which
	// would otherwise keep DROP DATABASE from succeeding.
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
		WHERE database = $1 AND active_pid IS NOT NULL`, name); err != nil {
		return err
	}
	// A terminated walsender releases its slot a moment later.
	for {
		var active int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots
			WHERE database = $1 AND active`, name).Scan(&active); err != nil {
			return err
		}
		if active == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d replication slots stay active: %w", active, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
		WHERE database = $1`, name); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

func exec(ctx context.Context, connURL, sql string) error {
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase returns connURL pointing at database name instead.
func withDatabase(connURL, name string) (string, error) {
	u, err := url.Parse(connURL)
	if err != nil || u.Scheme == "" {
		// A keyword/value DSN: a later dbname wins.
		return connURL + " dbname=" + name, nil
	}
	u.Path = "/" + name
	return u.String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
