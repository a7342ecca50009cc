package ctxsleep_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/ctxsleep"
)

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ctxsleep.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep with an ended context: %v, want context.Canceled", err)
	}
	if err := ctxsleep.Sleep(context.Background(), 0); err != nil {
		t.Fatalf("Sleep(0): %v", err)
	}
	if err := ctxsleep.Sleep(context.Background(), time.Nanosecond); err != nil {
		t.Fatalf("Sleep(1ns): %v", err)
	}
}
