// Package benchdb gives a benchmark a fresh database of its own on a
// PostgreSQL server: the one at a URL, or a throwaway local cluster.
package benchdb

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/internal/pgserver"
)

// DB is a benchmark's database.
type DB struct {
	// Pool connects to it.
	Pool *pgxpool.Pool
	// URL is its connection string.
	URL string
	// Server is the server it is on (Kind and Detail say which).
	Server *pgserver.Server

	admin *pgx.Conn
	name  string
}

// Open starts (or, with serverURL, uses) a PostgreSQL server and creates
// a database named after prefix in it, with a pool of at most maxConns
// connections (0: pgxpool's default). The server is a local cluster unless
// FICUS_POSTGRES_PROVIDER says otherwise: a container's 64 MB /dev/shm is
// too small for the parallel scans of large tables.
func Open(ctx context.Context, serverURL, prefix string, maxConns int32, log *slog.Logger) (*DB, error) {
	srv, err := pgserver.Start(ctx, pgserver.Config{URL: serverURL, Provider: cmp.Or(os.Getenv("FICUS_POSTGRES_PROVIDER"), "local"), Logger: log})
	if err != nil {
		return nil, err
	}
	d := &DB{Server: srv, name: fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())}
	if err := d.open(ctx, maxConns); err != nil {
		d.Close(ctx)
		return nil, err
	}
	return d, nil
}

func (d *DB) open(ctx context.Context, maxConns int32) error {
	var err error
	if d.admin, err = pgx.Connect(ctx, d.Server.URL); err != nil {
		return err
	}
	if _, err := d.admin.Exec(ctx, "CREATE DATABASE "+d.name); err != nil {
		return err
	}
	u, err := url.Parse(d.Server.URL)
	if err != nil {
		return err
	}
	u.Path = "/" + d.name
	d.URL = u.String()
	cfg, err := pgxpool.ParseConfig(d.URL)
	if err != nil {
		return err
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	d.Pool, err = pgxpool.NewWithConfig(ctx, cfg)
	return err
}

// Close drops the database and stops a server Open started, best effort.
func (d *DB) Close(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	if d.Pool != nil {
		d.Pool.Close()
	}
	if d.admin != nil {
		d.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+d.name+" WITH (FORCE)") //nolint:errcheck // best effort
		d.admin.Close(ctx)
	}
	d.Server.Stop(ctx) //nolint:errcheck // best effort
}
