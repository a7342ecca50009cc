package harness

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgPassword is the superuser's password in every server of the run; the
// servers are reachable on 127.0.0.1 and the run's network only.
const pgPassword = "ficus-e2e"

// Postgres is a PostgreSQL server in the run, with wal_level=logical.
type Postgres struct {
	*Container
}

func pgSpec(name string, extra []string) Spec {
	cmd := append([]string{"postgres",
		"-c", "wal_level=logical",
		"-c", "max_replication_slots=64",
		"-c", "max_wal_senders=64",
		"-c", "max_connections=400",
		"-c", "wal_sender_timeout=10s",
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
	}, extra...)
	return Spec{
		Name:  name,
		Cmd:   cmd,
		Env:   map[string]string{"POSTGRES_PASSWORD": pgPassword, "POSTGRES_INITDB_ARGS": "--no-sync"},
		Ports: []string{"5432"},
	}
}

func (e *Env) startPostgres(ctx context.Context, name string, extra []string) (*Postgres, error) {
	spec := pgSpec(name, extra)
	spec.Image = e.cfg.PostgresImage
	c, err := e.start(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	p := &Postgres{c}
	if err := p.waitReady(ctx, 2*time.Minute); err != nil {
		return nil, err
	}
	return p, nil
}

// Postgres starts a PostgreSQL server of t's own (for scenarios that
// restart or break it), stopped when t ends; extra are more server
// arguments ("-c", "name=value").
func (e *Env) Postgres(t testing.TB, name string, extra ...string) *Postgres {
	t.Helper()
	spec := pgSpec(name, extra)
	spec.Image = e.cfg.PostgresImage
	p := &Postgres{e.Run(t, spec)}
	if err := p.waitReady(t.Context(), 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitReady waits until the server accepts a query from the host: the
// image's entrypoint runs a temporary server for its init scripts first,
// so a listening port alone is not enough.
func (p *Postgres) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		mp, err := p.ctr.MappedPort(ctx, "5432/tcp")
		if err == nil {
			var conn *pgx.Conn
			conn, err = pgx.Connect(ctx, p.url("127.0.0.1:"+mp.Port(), "postgres"))
			if err == nil {
				err = conn.Ping(ctx)
				conn.Close(ctx)
				if err == nil {
					return nil
				}
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond): // polling the server's readiness, bounded
		}
	}
	return fmt.Errorf("postgres %s not ready after %s: %v", p.Name, timeout, last)
}

func (p *Postgres) url(hostport, db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword("postgres", pgPassword),
		Host:     hostport,
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// URL is database db's URL for containers on the network.
func (p *Postgres) URL(db string) string { return p.url(p.Inside("5432"), db) }

// HostURL is database db's URL for the test process (its published port,
// which changes when the server's container restarts).
func (p *Postgres) HostURL(t testing.TB, db string) string {
	return p.url(p.Addr(t, "5432"), db)
}

// Database creates a database of t's own on the server and returns its
// name; it is dropped (with its replication slots) when t ends.
func (p *Postgres) Database(t testing.TB, part string) string {
	t.Helper()
	db := Name(t, part)
	admin := p.Pool(t, "postgres")
	if _, err := admin.Exec(t.Context(), "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		t.Fatalf("create database %s: %v", db, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		mp, err := p.ctr.MappedPort(ctx, "5432/tcp")
		if err != nil {
			return // the server is gone with its container
		}
		conn, err := pgx.Connect(ctx, p.url("127.0.0.1:"+mp.Port(), "postgres"))
		if err != nil {
			return // the server is gone with its container
		}
		defer conn.Close(ctx)
		// Slots first: a database with a slot cannot be dropped, and an
		// active slot's walsender is ended by pg_terminate_backend.
		conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
			WHERE database = $1 AND active_pid IS NOT NULL`, db)
		conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, db)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", db, err)
		}
	})
	return db
}

// Pool is a connection pool on database db for the test process, closed
// when t ends.
func (p *Postgres) Pool(t testing.TB, db string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), p.HostURL(t, db))
	if err != nil {
		t.Fatalf("pool on %s: %v", db, err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Restart stops the server's container gracefully and starts it again:
// the same name on the network, so ficus components find it at the same
// address; the published port may change (use HostURL again).
func (p *Postgres) Restart(t testing.TB, stopTimeout time.Duration) {
	t.Helper()
	p.Stop(t, stopTimeout)
	p.Start(t)
	if err := p.waitReady(t.Context(), 2*time.Minute); err != nil {
		t.Fatal(err)
	}
}
