package proxy

import (
	"net/http"
	"strconv"
)

// recorder wraps the client's ResponseWriter: it remembers the status and,
// when asked to, keeps a copy of the body up to a limit, for the
// idempotency store and the shadow comparison.
type recorder struct {
	http.ResponseWriter
	status    int
	written   int64
	keep      int64 // bytes of body to keep; 0 keeps nothing
	body      []byte
	truncated bool
}

func (r *recorder) WriteHeader(status int) {
	// An informational answer (103 Early Hints) precedes the real one.
	if r.status == 0 && (status >= 200 || status == http.StatusSwitchingProtocols) {
		r.status = status
	}
	if r.keep > 0 && r.body == nil && status >= 200 {
		// Room for the whole body at once when its length is announced
		// and within what is kept.
		if n, err := strconv.ParseInt(r.Header().Get("Content-Length"), 10, 64); err == nil && n > 0 && n <= r.keep {
			r.body = make([]byte, 0, n)
		}
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.retain(p)
	n, err := r.ResponseWriter.Write(p)
	r.written += int64(n)
	return n, err
}

// retain keeps p as the next part of the body, within keep.
func (r *recorder) retain(p []byte) {
	if r.keep > 0 && !r.truncated {
		if room := r.keep - int64(len(r.body)); int64(len(p)) <= room {
			r.body = append(r.body, p...)
		} else {
			r.truncated = true
		}
	}
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush passes streaming responses through at once.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) code() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}
