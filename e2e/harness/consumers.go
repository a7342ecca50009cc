package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/moby/moby/client"
)

// consumers serves the metrics of what a scenario runs inside the test
// process (a consumer applying outbox events through ficus's inbox, as a
// service would) on the run's network gateway, the host's address on the
// Docker network, so that the run's VictoriaMetrics scrapes them like a
// container's. It listens on that address only, never on all interfaces.
type consumers struct {
	set  *metrics.Set
	srv  *http.Server
	addr string // gateway:port, as containers reach it
}

func (e *Env) startConsumers(ctx context.Context) (*consumers, error) {
	nw, err := e.docker.NetworkInspect(ctx, e.network.ID, client.NetworkInspectOptions{})
	if err != nil {
		return nil, fmt.Errorf("inspect network %s: %w", e.network.Name, err)
	}
	var gw string
	for _, c := range nw.Network.IPAM.Config {
		if c.Gateway.IsValid() && c.Gateway.Is4() {
			gw = c.Gateway.String()
			break
		}
	}
	if gw == "" {
		return nil, fmt.Errorf("network %s has no IPv4 gateway", e.network.Name)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
	if err != nil {
		return nil, fmt.Errorf("listen on the network's gateway %s: %w", gw, err)
	}
	c := &consumers{set: metrics.NewSet(), addr: ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) { c.set.WritePrometheus(w) })
	c.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := c.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Println("e2e: consumers' metrics:", err)
		}
	}()
	return c, nil
}

// ConsumerMetrics is where a scenario's in-process consumers register
// their metrics (for example outbox.InboxConfig.Metrics); the run's
// VictoriaMetrics scrapes them as job "e2e-consumers". Nil without the
// metrics server.
func (e *Env) ConsumerMetrics() *metrics.Set {
	if e.consumers == nil {
		return nil
	}
	return e.consumers.set
}
