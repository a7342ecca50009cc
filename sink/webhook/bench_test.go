package webhook_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ficuslabs/ficus/sink/webhook"
)

// BenchmarkSend posts 100-event batches over loopback to an endpoint that
// reads and acknowledges them.
func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	s, err := webhook.New(webhook.Config{URL: srv.URL})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(b.Context())
	batch := events(25, 4) // 100 events over 25 keys
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Send(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
}
