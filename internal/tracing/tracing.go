// Package tracing sets up OpenTelemetry tracing for a ficus process: an
// OTLP/HTTP exporter, a batching tracer provider and the W3C trace-context
// propagator, all off unless an OTLP endpoint is configured.
//
// The standard OpenTelemetry environment variables apply, read by the SDK
// and the exporter themselves:
//
//   - OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: where
//     spans go (http://collector:4318); without either, tracing is off;
//   - OTEL_EXPORTER_OTLP_HEADERS / _TRACES_HEADERS, _TIMEOUT, _COMPRESSION,
//     _CERTIFICATE: the exporter's headers (API keys), timeout, gzip and CA;
//   - OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES: the process's name
//     and attributes (Config.ServiceName is the default name);
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG: the sampler
//     (parentbased_traceidratio with 0.01 samples 1% of new traces and
//     follows the caller's decision otherwise); the SDK's default is
//     parentbased_always_on;
//   - OTEL_SDK_DISABLED=true turns tracing off even with an endpoint.
//
// Off, the tracer provider is OpenTelemetry's no-op one and components
// given it skip their tracing work altogether (see Enabled).
package tracing

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Names of the environment variables that turn tracing on or off.
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
)

// Config configures Setup.
type Config struct {
	// ServiceName is service.name unless OTEL_SERVICE_NAME sets it.
	// Defaults to "ficus".
	ServiceName string
	// Version is service.version. Defaults to none.
	Version string
	// Getenv reads the environment to decide whether tracing is on.
	// Defaults to os.Getenv. (The SDK and the exporter read the other
	// OTEL_* variables from the process environment themselves.)
	Getenv func(string) string
}

// Provider is a process's tracer provider and its shutdown.
type Provider struct {
	tp  trace.TracerProvider
	sdk *sdktrace.TracerProvider // nil when off
}

// Setup returns the process's tracer provider: an SDK provider exporting
// over OTLP/HTTP when an endpoint is configured, else a no-op one.
func Setup(ctx context.Context, cfg Config) (*Provider, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if strings.EqualFold(strings.TrimSpace(getenv(EnvSDKDisabled)), "true") ||
		getenv(EnvEndpoint) == "" && getenv(EnvTracesEndpoint) == "" {
		return &Provider{tp: noop.NewTracerProvider()}, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: otlp exporter: %w", err)
	}
	attrs := []resource.Option{
		resource.WithAttributes(attribute.String("service.name", cmp.Or(cfg.ServiceName, "ficus"))),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
	}
	if cfg.Version != "" {
		attrs = append(attrs, resource.WithAttributes(attribute.String("service.version", cfg.Version)))
	}
	res, err := resource.New(ctx, attrs...)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// No sampler option: the SDK reads OTEL_TRACES_SAMPLER(_ARG).
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Provider{tp: sdk, sdk: sdk}, nil
}

// TracerProvider returns the provider to give components.
func (p *Provider) TracerProvider() trace.TracerProvider { return p.tp }

// Enabled reports whether spans are exported.
func (p *Provider) Enabled() bool { return p.sdk != nil }

// Shutdown exports the spans still buffered and stops the exporter.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p.sdk == nil {
		return nil
	}
	if err := p.sdk.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}

// Enabled reports whether tp is a provider worth starting spans with: not
// nil and not OpenTelemetry's no-op provider. Components on hot paths
// check it once, when built, and skip tracing when it is false.
func Enabled(tp trace.TracerProvider) bool {
	if tp == nil {
		return false
	}
	_, noopTP := tp.(noop.TracerProvider)
	return !noopTP
}

// Or returns tp, or the no-op provider when tp is nil.
func Or(tp trace.TracerProvider) trace.TracerProvider {
	if tp == nil {
		return noop.NewTracerProvider()
	}
	return tp
}

// Propagator returns the W3C trace-context propagator (traceparent and
// tracestate), the one ficus reads and writes everywhere.
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

// Inject writes the trace context of ctx's span into h (traceparent and,
// when there is one, tracestate); it writes nothing when ctx has none.
func Inject(ctx context.Context, h http.Header) {
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(h))
}

// Extract returns ctx with the remote span context h carries, if any.
func Extract(ctx context.Context, h http.Header) context.Context {
	return propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(h))
}

// InjectMap writes the trace context of ctx's span into m under
// "traceparent" and "tracestate" (the names CloudEvents' distributed
// tracing extension uses), and reports whether ctx had one.
func InjectMap(ctx context.Context, m map[string]string) bool {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return false
	}
	propagation.TraceContext{}.Inject(ctx, propagation.MapCarrier(m))
	return true
}

// ExtractMap returns ctx with the remote span context in m's
// "traceparent" and "tracestate", if m holds a valid one.
func ExtractMap(ctx context.Context, m map[string]string) context.Context {
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(m))
}

// Remote returns the span context that traceparent and tracestate
// describe; it is not valid when traceparent is missing or malformed.
func Remote(traceparent, tracestate string) trace.SpanContext {
	if traceparent == "" {
		return trace.SpanContext{}
	}
	m := map[string]string{HeaderTraceparent: traceparent}
	if tracestate != "" {
		m[HeaderTracestate] = tracestate
	}
	return trace.SpanContextFromContext(ExtractMap(context.Background(), m))
}

// The W3C trace-context header names, also the CloudEvents distributed
// tracing extension's attribute names.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)
