package proxy

import (
	"net/http"
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
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.keep > 0 && !r.truncated {
		if room := r.keep - int64(len(r.body)); int64(len(p)) <= room {
			r.body = append(r.body, p...)
		} else {
			r.truncated = true
		}
	}
	n, err := r.ResponseWriter.Write(p)
	r.written += int64(n)
	return n, err
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
