package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func runNATS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("nats", stderr)
	listen := fs.String("listen", "127.0.0.1:4222", "client address, host:port (port 0 picks one)")
	dir := fs.String("dir", "", "JetStream storage directory, on the disk being measured (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	host, portText, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("%w: -listen %q: %w", errUsage, *listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 {
		return fmt.Errorf("%w: -listen %q: want a port number", errUsage, *listen)
	}
	if port == 0 {
		port = -1 // nats-server's "pick a free port"
	}
	if *dir == "" {
		return fmt.Errorf("%w: -dir is required (where JetStream stores the streams)", errUsage)
	}
	srv, err := server.NewServer(&server.Options{
		Host: host, Port: port, JetStream: true, StoreDir: *dir,
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		return fmt.Errorf("nats server: %w", err)
	}
	srv.Start()
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	if !srv.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("nats server on %s did not become ready in 10s", *listen)
	}
	fmt.Fprintf(stdout, "url=%s\n", srv.ClientURL())
	if f, ok := stdout.(interface{ Sync() error }); ok {
		_ = f.Sync() // bench/cdc.sh reads the URL while the server runs
	}
	<-ctx.Done()
	return nil
}
