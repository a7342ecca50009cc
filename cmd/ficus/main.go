// Command ficus strangles a legacy monolith from the outside: an edge proxy,
// change data capture, a transactional outbox, a pricing worker fleet and a
// simulated legacy world to rehearse on. Run "ficus --help".
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	ctx, cancel := shutdownContext(signals, os.Stderr, os.Exit)
	a := &app{stdout: os.Stdout, stderr: os.Stderr, exec: execProcess}
	code := a.run(ctx, os.Args[1:])
	cancel()
	os.Exit(code)
}

// shutdownContext returns a context that ends on the first signal, so that
// servers drain; on a second signal it calls exit(130) at once.
func shutdownContext(signals <-chan os.Signal, stderr io.Writer, exit func(int)) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case sig := <-signals:
			fmt.Fprintf(stderr, "ficus: %s: shutting down gracefully (send it again to exit now)\n", sig)
			cancel()
		case <-ctx.Done():
			return
		}
		sig := <-signals
		fmt.Fprintf(stderr, "ficus: %s again: exiting now\n", sig)
		exit(130)
	}()
	return ctx, cancel
}
