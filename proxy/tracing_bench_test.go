package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ficuslabs/ficus/internal/tracing"
	"github.com/ficuslabs/ficus/proxy"
)

// BenchmarkProxyTracing is BenchmarkProxyGET's ficus-all-features with
// tracing off, on sampling 1% of the requests, and on sampling every
// request, the spans exported over OTLP/HTTP (the real exporter and batch
// processor) to a loopback receiver that drops them. The goal: 1% costs
// less than 5% of the throughput. bench/run.sh measures the same three
// side by side as separate processes (ficus-memory, ficus-trace-1,
// ficus-trace-100).
func BenchmarkProxyTracing(b *testing.B) {
	up := fixedUpstream(b)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	b.Cleanup(collector.Close)
	for _, c := range []struct{ name, ratio string }{{"off", ""}, {"sample-1pct", "0.01"}, {"sample-100pct", "1"}} {
		b.Run(c.name, func(b *testing.B) {
			settings := proxy.Settings{}
			if c.ratio != "" {
				env := map[string]string{tracing.EnvEndpoint: collector.URL}
				b.Setenv(tracing.EnvEndpoint, collector.URL)
				b.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
				b.Setenv("OTEL_TRACES_SAMPLER_ARG", c.ratio)
				tp, err := tracing.Setup(context.Background(), tracing.Config{ServiceName: "bench", Getenv: func(k string) string { return env[k] }})
				if err != nil {
					b.Fatal(err)
				}
				defer tp.Shutdown(context.Background())
				settings.TracerProvider = tp.TracerProvider()
			}
			cfg, err := proxy.ParseConfig([]byte(fullConfig(up.URL)), "")
			if err != nil {
				b.Fatal(err)
			}
			settings.Config = cfg
			p, err := proxy.New(settings)
			if err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewServer(p)
			defer srv.Close()
			benchGET(b, srv.URL)
		})
	}
}
