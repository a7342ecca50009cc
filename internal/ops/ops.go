// Package ops serves the operational endpoints every long-running ficus
// command exposes: /metrics (Prometheus text format), /healthz (the process
// is alive) and /readyz (the process can do its work).
package ops

import (
	"encoding/json"
	"net/http"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// Check reports whether one dependency is ready; a nil error means ready.
type Check func(*http.Request) error

// Handler serves /metrics, /healthz and /readyz. The zero value serves
// process metrics only and is always ready.
type Handler struct {
	mu     sync.RWMutex
	sets   []*metrics.Set
	checks map[string]Check
}

// Register adds a component's metrics set to /metrics.
func (h *Handler) Register(set *metrics.Set) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sets = append(h.sets, set)
}

// AddCheck makes /readyz depend on check, reported under name.
func (h *Handler) AddCheck(name string, check Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.checks == nil {
		h.checks = make(map[string]Check)
	}
	h.checks[name] = check
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/metrics":
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		metrics.WriteProcessMetrics(w)
		h.mu.RLock()
		sets := h.sets
		h.mu.RUnlock()
		for _, s := range sets {
			s.WritePrometheus(w)
		}
	case "/healthz":
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	case "/readyz":
		h.ready(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (h *Handler) ready(w http.ResponseWriter, r *http.Request) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	status, failed := http.StatusOK, map[string]string{}
	for name, check := range h.checks {
		if err := check(r); err != nil {
			status, failed[name] = http.StatusServiceUnavailable, err.Error()
		}
	}
	if status == http.StatusOK {
		writeJSON(w, status, map[string]string{"status": "ready"})
		return
	}
	writeJSON(w, status, map[string]any{"status": "not ready", "failed": failed})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
