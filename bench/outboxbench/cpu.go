package main

import (
	"time"

	"github.com/ficuslabs/ficus/bench/internal/cpustat"
)

// cpuTimes are CPU times spent so far, by this process (the relay and the
// sink, NATS's embedded server included) and by the PostgreSQL server's
// processes (decoding, polls and deletes): contention on a shared machine
// stretches wall time, much less the CPU a relay costs per event.
type cpuTimes struct{ self, server time.Duration }

func (b *bench) cpu() cpuTimes {
	return cpuTimes{self: cpustat.Self(), server: cpustat.Server(b.postmaster)}
}
