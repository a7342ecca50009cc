package fleet

import (
	"cmp"
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"riverqueue.com/riverui"
)

// OperatorUIConfig configures River's web UI for operators.
type OperatorUIConfig struct {
	// Queue gives the UI its River client. Required.
	Queue *Queue
	// Password is what an operator types (HTTP Basic authentication, any
	// user name). Required: the UI can cancel, retry and delete jobs.
	Password string
	// Prefix is the path the UI is served under. Defaults to /riverui.
	Prefix string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// OperatorUI serves River's web UI (riverqueue.com/riverui) behind a
// password.
type OperatorUI struct {
	cfg OperatorUIConfig
	h   *riverui.Handler
}

// NewOperatorUI checks cfg and builds the UI; Run starts its background
// services.
func NewOperatorUI(cfg OperatorUIConfig) (*OperatorUI, error) {
	if cfg.Queue == nil || cfg.Password == "" {
		return nil, fmt.Errorf("%w: river ui: Queue and Password are required", ErrInvalid)
	}
	cfg.Prefix = cmp.Or(cfg.Prefix, "/riverui")
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	h, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: riverui.NewEndpoints(cfg.Queue.river, nil),
		Logger:    cfg.Logger,
		Prefix:    cfg.Prefix,
	})
	if err != nil {
		return nil, fmt.Errorf("river ui: %w", err)
	}
	return &OperatorUI{cfg: cfg, h: h}, nil
}

// Prefix is the path the UI is served under.
func (u *OperatorUI) Prefix() string { return u.cfg.Prefix }

// Run starts the UI's background services and waits for ctx to end.
func (u *OperatorUI) Run(ctx context.Context) error {
	if err := u.h.Start(ctx); err != nil {
		return fmt.Errorf("river ui: %w", err)
	}
	<-ctx.Done()
	return nil
}

func (u *OperatorUI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, pw, ok := r.BasicAuth()
	if !ok || subtle.ConstantTimeCompare([]byte(pw), []byte(u.cfg.Password)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="ficus pricing operators", charset="UTF-8"`)
		writeError(w, http.StatusUnauthorized, "operators only: give the operator password")
		return
	}
	if !strings.HasPrefix(r.URL.Path, u.cfg.Prefix) {
		writeError(w, http.StatusNotFound, "no such page")
		return
	}
	u.h.ServeHTTP(w, r)
}
