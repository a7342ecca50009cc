// Package pgserver finds a PostgreSQL server with logical replication for
// ficus demo and the test suites, the same way everywhere:
//
//  1. a URL the user gave (--database-url, FICUS_TEST_DATABASE_URL);
//  2. else a throwaway container through testcontainers when Docker is
//     reachable (image from FICUS_POSTGRES_IMAGE);
//  3. else a throwaway cluster from local PostgreSQL binaries (initdb and
//     postgres in a temporary directory, as an unprivileged user when the
//     process runs as root).
//
// With none of the three, Start fails with ErrNotFound and says what to
// install.
package pgserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultImage is the container image used when Config.Image and
// FICUS_POSTGRES_IMAGE are empty: the upstream postgres image.
const DefaultImage = "postgres:17"

// ErrNotFound means no way to get a PostgreSQL server was available.
var ErrNotFound = errors.New(`no PostgreSQL available: give a server with wal_level=logical ` +
	`(--database-url or FICUS_TEST_DATABASE_URL), or start Docker ` +
	`(the image comes from FICUS_POSTGRES_IMAGE; "make images" builds one offline), ` +
	`or install the PostgreSQL server binaries (Debian/Ubuntu: apt-get install postgresql)`)

// Kind says where a Server came from.
type Kind string

// The kinds of server Start can return.
const (
	KindURL    Kind = "url"
	KindDocker Kind = "docker"
	KindLocal  Kind = "local"
)

// Config says how to find a server. The zero value tries Docker, then local
// binaries.
type Config struct {
	// URL of an existing server; when set nothing is started.
	URL string
	// Image for the container. Defaults to FICUS_POSTGRES_IMAGE, then DefaultImage.
	Image string
	// Provider forces one way: "docker" or "local". Defaults to
	// FICUS_POSTGRES_PROVIDER, then to trying Docker, then local binaries.
	Provider string
	// StartTimeout bounds starting a server. Defaults to 3m (a first
	// container start may have to unpack an image).
	StartTimeout time.Duration
	// Logger receives progress. Defaults to discarding.
	Logger *slog.Logger
}

// Server is a running (or given) PostgreSQL server.
type Server struct {
	// URL connects as a superuser to the maintenance database.
	URL string
	// Kind says where the server came from.
	Kind Kind
	// Detail names the image or binary directory used, for messages.
	Detail string

	stop func(context.Context) error
	// shutDown and start stop and start a local cluster again, keeping
	// its data; nil for other kinds.
	shutDown func(context.Context, ShutdownMode) error
	start    func(context.Context) error
}

// ShutdownMode is how a server shuts down, as pg_ctl stop -m names it.
type ShutdownMode string

// The shutdown modes: smart waits for the sessions to end, fast
// disconnects them after a shutdown checkpoint, immediate aborts (crash
// recovery follows at the next start).
const (
	ShutdownSmart     ShutdownMode = "smart"
	ShutdownFast      ShutdownMode = "fast"
	ShutdownImmediate ShutdownMode = "immediate"
)

// ErrNotRestartable means the server is not a local cluster started by
// Start, so ShutDown and StartAgain cannot act on it.
var ErrNotRestartable = errors.New("pgserver: only a local cluster can be shut down and started again")

// ShutDown stops a local cluster in mode, keeping its data, and returns
// once the server has exited; when ctx ends first it kills the server and
// returns an error wrapping ctx's. StartAgain starts it again.
func (s *Server) ShutDown(ctx context.Context, mode ShutdownMode) error {
	if s.shutDown == nil {
		return ErrNotRestartable
	}
	return s.shutDown(ctx, mode)
}

// StartAgain starts a local cluster that ShutDown stopped, on the same port
// and data, and returns once it accepts connections.
func (s *Server) StartAgain(ctx context.Context) error {
	if s.start == nil {
		return ErrNotRestartable
	}
	return s.start(ctx)
}

// Restart shuts a local cluster down in mode and starts it again, as
// pg_ctl restart -m mode does.
func (s *Server) Restart(ctx context.Context, mode ShutdownMode) error {
	if err := s.ShutDown(ctx, mode); err != nil {
		return err
	}
	return s.StartAgain(ctx)
}

// Stop shuts a started server down and removes its data; it does nothing
// for a server given by URL.
func (s *Server) Stop(ctx context.Context) error {
	if s.stop == nil {
		return nil
	}
	return s.stop(ctx)
}

// Start returns a server found the documented way.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	log := cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)).With("component", "pgserver")
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(cfg.StartTimeout, 3*time.Minute))
	defer cancel()

	if cfg.URL != "" {
		if _, err := pgx.ParseConfig(cfg.URL); err != nil {
			return nil, fmt.Errorf("database url: %w", err)
		}
		return &Server{URL: cfg.URL, Kind: KindURL, Detail: "given URL"}, nil
	}
	provider := cmp.Or(cfg.Provider, os.Getenv("FICUS_POSTGRES_PROVIDER"), "auto")
	switch provider {
	case "auto", "docker", "local":
	default:
		return nil, fmt.Errorf("postgres provider %q: want docker, local or empty", provider)
	}
	if provider == "docker" || provider == "auto" && dockerReachable(ctx, log) {
		image := cmp.Or(cfg.Image, envImage(), DefaultImage)
		log.Info("starting postgres container", "image", image)
		return startContainer(ctx, image, log)
	}
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	log.Info("starting local postgres cluster", "bin", bin)
	return startLocal(ctx, bin, log)
}

// waitReady pings url until the server answers or ctx ends.
func waitReady(ctx context.Context, url string, exited <-chan struct{}) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		conn, err := pgx.Connect(ctx, url)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for postgres: %w (last error: %v)", ctx.Err(), err)
		case <-exited:
			return fmt.Errorf("postgres exited before accepting connections (last error: %v)", err)
		case <-tick.C:
		}
	}
}
