package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/ficuslabs/ficus/internal/tracing"
)

// startTracing sets up OpenTelemetry for the command about to run (off
// unless OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// is set; see docs/tracing.md) and makes the logger add trace_id and
// span_id to records logged with a span's context.
func (a *app) startTracing(cmd *cobra.Command) error {
	a.log = slog.New(tracing.NewLogHandler(a.log.Handler()))
	if a.tracing != nil {
		return nil // set up by an outer command already
	}
	p, err := tracing.Setup(cmd.Context(), tracing.Config{ServiceName: serviceName(cmd), Version: version})
	if err != nil {
		return usageError{fmt.Errorf("tracing: %w (check the OTEL_EXPORTER_OTLP_* environment variables)", err)}
	}
	a.tracing = p
	if p.Enabled() {
		a.log.Debug("tracing on: exporting spans over OTLP/HTTP", "service", serviceName(cmd))
	}
	return nil
}

// stopTracing exports the spans still buffered, giving it a few seconds.
func (a *app) stopTracing() {
	if a.tracing == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.tracing.Shutdown(ctx); err != nil && a.log != nil {
		a.log.Warn("tracing: spans not exported at exit", "err", err)
	}
	a.tracing = nil
}

// tracerProvider is what components get: the no-op provider when tracing
// is off.
func (a *app) tracerProvider() trace.TracerProvider {
	if a.tracing == nil {
		return noop.NewTracerProvider()
	}
	return a.tracing.TracerProvider()
}

// serviceName names a command's process in traces: "ficus proxy" is
// ficus-proxy, "ficus sim mes" ficus-sim-mes; a trailing "run" or
// "serve" below a command is dropped ("ficus cdc run" is ficus-cdc,
// "ficus orders serve" ficus-orders).
func serviceName(cmd *cobra.Command) string {
	parts := strings.Fields(cmd.CommandPath())
	if n := len(parts); n > 2 {
		switch parts[n-1] {
		case "run", "serve":
			parts = parts[:n-1]
		}
	}
	return strings.Join(parts, "-")
}
