package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
)

// findBinaries returns the directory holding initdb and postgres: the one on
// PATH, else the newest Debian-style /usr/lib/postgresql/N/bin.
func findBinaries() (string, error) {
	if initdb, err := exec.LookPath("initdb"); err == nil {
		initdb, _ = filepath.EvalSymlinks(initdb)
		dir := filepath.Dir(initdb)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", ErrNotFound
}

func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// startLocal runs initdb and postgres in a fresh temporary directory.
func startLocal(ctx context.Context, bin string, log *slog.Logger) (*Server, error) {
	dir, err := os.MkdirTemp("", "ficus-pg-")
	if err != nil {
		return nil, fmt.Errorf("local postgres: %w", err)
	}
	cred, err := unprivileged()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if cred != nil {
		if err := chownTree(dir, cred); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	srv, err := initAndRun(ctx, bin, dir, cred, log)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return srv, nil
}

func initAndRun(ctx context.Context, bin, dir string, cred *syscall.Credential, log *slog.Logger) (*Server, error) {
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w: %s", err, bytes.TrimSpace(out))
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	l := &localCluster{bin: bin, dir: dir, data: data, port: port, cred: cred}
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	if err := l.start(ctx, url); err != nil {
		return nil, err
	}
	log.Info("local postgres ready", "port", port, "dir", dir)
	return &Server{
		URL: url, Kind: KindLocal, Detail: bin,
		stop: func(ctx context.Context) error {
			l.shutDown(ctx, ShutdownFast)
			return os.RemoveAll(dir)
		},
		shutDown: l.shutDown,
		start:    func(ctx context.Context) error { return l.start(ctx, url) },
	}, nil
}

// localCluster is a postmaster ficus started on a data directory of its own.
type localCluster struct {
	bin, dir, data string
	port           int
	cred           *syscall.Credential

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// start runs postgres on the cluster's data directory and port and waits
// until it accepts connections.
func (l *localCluster) start(ctx context.Context, url string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cmd != nil {
		return errors.New("local postgres: already running")
	}
	logPath := filepath.Join(l.dir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("local postgres log: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(l.bin, "postgres"),
		"-D", l.data, "-k", l.dir, "-p", strconv.Itoa(l.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "wal_level=logical",
		"-c", "max_replication_slots=32",
		"-c", "max_wal_senders=32",
		"-c", "max_connections=300",
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "synchronous_commit=off")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Pdeathsig: an immediate shutdown if ficus dies without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: l.cred, Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	if err := waitReady(ctx, url, exited); err != nil {
		cmd.Process.Signal(syscall.SIGQUIT)
		<-exited
		tail, _ := os.ReadFile(logPath)
		return fmt.Errorf("local postgres: %w\n%s", err, lastLines(tail, 20))
	}
	l.cmd, l.exited = cmd, exited
	return nil
}

// shutDown stops the postmaster the way pg_ctl stop -m mode does (by
// signal) and waits until it has exited; when ctx ends first it kills it
// and returns ctx's error.
func (l *localCluster) shutDown(ctx context.Context, mode ShutdownMode) error {
	sig, ok := map[ShutdownMode]syscall.Signal{
		ShutdownSmart: syscall.SIGTERM, ShutdownFast: syscall.SIGINT, ShutdownImmediate: syscall.SIGQUIT,
	}[mode]
	if !ok {
		return fmt.Errorf("local postgres: shutdown mode %q: want smart, fast or immediate", mode)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cmd == nil {
		return nil
	}
	cmd, exited := l.cmd, l.exited
	l.cmd, l.exited = nil, nil
	cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("local postgres: %s shutdown did not finish: %w", mode, ctx.Err())
	}
}

// unprivileged returns the credentials to run PostgreSQL with: nil when the
// process is not root (run as ourselves), else the postgres user, else nobody.
func unprivileged() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, errors.New("local postgres: running as root and no 'postgres' or 'nobody' user to run it as; create one (useradd postgres)")
}

func chownTree(dir string, cred *syscall.Credential) error {
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(cred.Uid), int(cred.Gid))
	})
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(b []byte, n int) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte("\n"))
}
