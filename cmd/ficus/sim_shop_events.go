package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/pflag"

	"github.com/ficuslabs/ficus/outbox"
	"github.com/ficuslabs/ficus/sim/shop"
	"github.com/ficuslabs/ficus/sink"
)

// shopEventFlags are ficus sim shop's flags for its status events.
type shopEventFlags struct {
	mode, broker, outboxMode string
	crashRate, brokerDown    float64
}

func (f *shopEventFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.mode, "events", "off", "status events: off, legacy (published to --broker after each commit; lost on a crash or an absent broker in between) or outbox (enqueued in the same transaction for ficus outbox relay)")
	fl.StringVar(&f.broker, "broker", "", "where legacy mode publishes: http(s)://… (webhook, e.g. ficus sim crm --mode webhook) or nats://host:4222/PREFIX?stream=NAME")
	fl.StringVar(&f.outboxMode, "outbox-mode", string(outbox.ModeMessage), "outbox mode's writer: message or table (the relay's --mode)")
	fl.Float64Var(&f.crashRate, "crash-rate", 0, "share of status changes after whose commit the shop crashes before publishing (legacy mode loses them), 0 to 1")
	fl.Float64Var(&f.brokerDown, "broker-down-rate", 0, "share of publications that find the broker away (legacy mode loses them), 0 to 1")
}

// check refuses flags that cannot work, before anything starts.
func (f *shopEventFlags) check() error {
	mode, err := shop.ParseEventMode(f.mode)
	if err != nil {
		return usageError{fmt.Errorf("--events: %w", err)}
	}
	if _, err := outbox.ParseMode(f.outboxMode); err != nil {
		return usageError{fmt.Errorf("--outbox-mode: %w", err)}
	}
	switch {
	case mode == shop.EventsLegacy && f.broker == "":
		return usageError{errors.New("--events legacy needs --broker, e.g. --broker http://127.0.0.1:8082/events")}
	case !(f.crashRate >= 0 && f.crashRate <= 1) || !(f.brokerDown >= 0 && f.brokerDown <= 1):
		return usageError{errors.New("--crash-rate and --broker-down-rate must be within 0 and 1")}
	}
	return nil
}

// apply fills cfg.Events from the flags; close releases the broker.
func (f *shopEventFlags) apply(ctx context.Context, cfg *shop.Config, pool *pgxpool.Pool, set *metrics.Set, log *slog.Logger) (func(), error) {
	mode, err := shop.ParseEventMode(f.mode)
	if err != nil {
		return nil, usageError{fmt.Errorf("--events: %w", err)}
	}
	cfg.Events = shop.EventsConfig{Mode: mode, CrashRate: f.crashRate, BrokerDownRate: f.brokerDown}
	switch mode {
	case shop.EventsLegacy:
		if f.broker == "" {
			return nil, usageError{errors.New("--events legacy needs --broker, e.g. --broker http://127.0.0.1:8082/events")}
		}
		s, err := sink.Open(ctx, f.broker, sink.Options{Metrics: set, Logger: log})
		if err != nil {
			return nil, usageError{fmt.Errorf("--broker: %w", err)}
		}
		cfg.Events.Broker = s
		return func() { s.Close(context.WithoutCancel(ctx)) }, nil
	case shop.EventsOutbox:
		m, err := outbox.ParseMode(f.outboxMode)
		if err != nil {
			return nil, usageError{fmt.Errorf("--outbox-mode: %w", err)}
		}
		if _, err := outbox.Migrate(ctx, pool); err != nil {
			return nil, err
		}
		if cfg.Events.Outbox, err = outbox.NewWriter(outbox.WriterConfig{Mode: m}); err != nil {
			return nil, usageError{err}
		}
	}
	return func() {}, nil
}
