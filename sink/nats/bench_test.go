package nats_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/sink/nats"
)

// BenchmarkSendLargeBatch publishes 10,000-event batches, as one large
// transaction does, to an embedded JetStream server and waits for every
// acknowledgement.
func BenchmarkSendLargeBatch(b *testing.B) {
	srv := runServer(b)
	s, err := nats.New(b.Context(), nats.Config{URL: srv.ClientURL(), DuplicateWindow: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(b.Context())
	batch := events("orders", 0, 10000)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for i := range batch { // fresh ids, so the stream stores every event
			batch[i].ID = fmt.Sprintf("%016X-%06d", n, i)
		}
		n++
		if err := s.Send(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
}
