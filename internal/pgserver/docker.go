package pgserver

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver for wait.ForSQL
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/wait"
)

const containerPassword = "ficus"

func envImage() string { return os.Getenv("FICUS_POSTGRES_IMAGE") }

// dockerReachable reports whether a Docker engine answers. It sets the
// testcontainers defaults this environment needs when the user has not:
// no reaper (ficus stops its own containers, and the reaper image may not
// be pullable) and, for a local engine, 127.0.0.1 as the host to reach
// published ports on.
func dockerReachable(ctx context.Context, log *slog.Logger) bool {
	setDefaultEnv("TESTCONTAINERS_RYUK_DISABLED", "true")
	if host := os.Getenv("DOCKER_HOST"); host == "" || strings.HasPrefix(host, "unix://") {
		setDefaultEnv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
	}
	if os.Getenv("DOCKER_HOST") == "" {
		if _, err := os.Stat("/var/run/docker.sock"); err != nil {
			return false
		}
	}
	// The docker client logs its banner through the package default, which
	// no option reaches.
	tclog.SetDefault(debugLogger{log})
	provider, err := testcontainers.NewDockerProvider(testcontainers.WithLogger(debugLogger{log}))
	if err != nil {
		return false
	}
	defer provider.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return provider.Health(ctx) == nil
}

// debugLogger sends testcontainers' chatter to slog at debug level.
type debugLogger struct{ log *slog.Logger }

func (l debugLogger) Printf(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...))
}

func setDefaultEnv(key, value string) {
	if _, ok := os.LookupEnv(key); !ok {
		os.Setenv(key, value)
	}
}

func startContainer(ctx context.Context, image string, log *slog.Logger) (*Server, error) {
	dsn := func(host string, port network.Port) string {
		u := url.URL{
			Scheme:   "postgres",
			User:     url.UserPassword("postgres", containerPassword),
			Host:     host + ":" + port.Port(),
			Path:     "/postgres",
			RawQuery: "sslmode=disable",
		}
		return u.String()
	}
	ctr, err := testcontainers.Run(ctx, image,
		testcontainers.WithLogger(debugLogger{log}),
		testcontainers.WithEnv(map[string]string{
			"POSTGRES_PASSWORD":    containerPassword,
			"POSTGRES_INITDB_ARGS": "--no-sync", // a throwaway server needs no durable init
		}),
		testcontainers.WithExposedPorts("5432/tcp"),
		testcontainers.WithCmd("postgres",
			"-c", "wal_level=logical",
			"-c", "max_replication_slots=32",
			"-c", "max_wal_senders=32",
			"-c", "max_connections=300",
			"-c", "fsync=off",
			"-c", "full_page_writes=off",
			"-c", "synchronous_commit=off"),
		testcontainers.WithLabels(map[string]string{"dev.ficus.pgserver": "1"}),
		testcontainers.WithTmpfs(map[string]string{"/var/lib/postgresql/data": "rw"}),
		testcontainers.WithWaitStrategy(
			wait.ForSQL("5432/tcp", "pgx", dsn).WithStartupTimeout(2*time.Minute)),
	)
	if err != nil {
		if ctr != nil {
			ctr.Terminate(context.WithoutCancel(ctx))
		}
		return nil, fmt.Errorf("start postgres container from image %q: %w "+
			"(no registry reachable? build an image offline with \"make images\" and set FICUS_POSTGRES_IMAGE, "+
			"or use local PostgreSQL binaries with FICUS_POSTGRES_PROVIDER=local)", image, err)
	}
	host, err := ctr.Host(ctx)
	if err == nil {
		var port network.Port
		port, err = ctr.MappedPort(ctx, "5432/tcp")
		if err == nil {
			return &Server{
				URL:    dsn(host, port),
				Kind:   KindDocker,
				Detail: image,
				stop:   func(ctx context.Context) error { return ctr.Terminate(ctx) },
			}, nil
		}
	}
	ctr.Terminate(context.WithoutCancel(ctx))
	return nil, fmt.Errorf("postgres container address: %w", err)
}
