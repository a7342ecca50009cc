package pgserver

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestStartWithURLStartsNothing(t *testing.T) {
	t.Parallel()
	srv, err := Start(context.Background(), Config{URL: "postgres://u@db.example:5432/app"})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Kind != KindURL || srv.URL != "postgres://u@db.example:5432/app" {
		t.Fatalf("got %+v", srv)
	}
	if err := srv.Stop(context.Background()); err != nil {
		t.Fatalf("Stop of a given server: %v", err)
	}
	if err := srv.Restart(context.Background(), ShutdownFast); !errors.Is(err, ErrNotRestartable) {
		t.Fatalf("Restart of a given server: %v, want ErrNotRestartable", err)
	}
}

func TestStartRejectsBadInput(t *testing.T) {
	t.Parallel()
	if _, err := Start(context.Background(), Config{URL: "postgres://%zz"}); err == nil {
		t.Error("a malformed URL was accepted")
	}
	_, err := Start(context.Background(), Config{Provider: "kubernetes"})
	if err == nil || !strings.Contains(err.Error(), "kubernetes") {
		t.Errorf("unknown provider: %v", err)
	}
}

func TestErrNotFoundSaysWhatToInstall(t *testing.T) {
	t.Parallel()
	for _, want := range []string{"FICUS_TEST_DATABASE_URL", "Docker", "apt-get install postgresql"} {
		if !strings.Contains(ErrNotFound.Error(), want) {
			t.Errorf("ErrNotFound does not mention %q", want)
		}
	}
}

// The local path starts a real cluster with logical replication, runs it
// unprivileged when we are root, and removes everything on Stop.
func TestLocalCluster(t *testing.T) {
	if _, err := findBinaries(); errors.Is(err, ErrNotFound) {
		t.Fatalf("no PostgreSQL binaries on this machine: %v", err)
	}
	ctx := context.Background()
	srv, err := Start(ctx, Config{Provider: "local"})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Kind != KindLocal {
		t.Fatalf("kind %s", srv.Kind)
	}
	conn, err := pgx.Connect(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var level, user string
	conn.QueryRow(ctx, "SELECT current_setting('wal_level'), current_user").Scan(&level, &user)
	var dataDir string
	conn.QueryRow(ctx, "SHOW data_directory").Scan(&dataDir)
	if level != "logical" || user != "postgres" {
		t.Fatalf("wal_level %q, user %q", level, user)
	}

	// A restart in either mode keeps the data and the URL; the session
	// open across it is terminated.
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (id int); INSERT INTO kept VALUES (1); CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []ShutdownMode{ShutdownFast, ShutdownImmediate} {
		if err := srv.Restart(ctx, mode); err != nil {
			t.Fatalf("restart -m %s: %v", mode, err)
		}
		if err := conn.Ping(ctx); err == nil {
			t.Errorf("a session survived restart -m %s", mode)
		}
		conn.Close(ctx)
		if conn, err = pgx.Connect(ctx, srv.URL); err != nil {
			t.Fatalf("after restart -m %s: %v", mode, err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM kept").Scan(&n); err != nil || n != 1 {
			t.Fatalf("after restart -m %s: %d rows, %v", mode, n, err)
		}
	}
	if err := srv.ShutDown(ctx, "abrupt"); err == nil {
		t.Error("an unknown shutdown mode was accepted")
	}
	conn.Close(ctx)
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Fatalf("data directory %s survives Stop: %v", dataDir, err)
	}
	if _, err := pgx.Connect(ctx, srv.URL); err == nil {
		t.Fatal("server still answers after Stop")
	}
}
