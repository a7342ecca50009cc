package h1

import (
	"fmt"
	"net"
	"sync/atomic"
)

// Guard wraps a plain-TCP connection for http.Transport so that the
// Transport's own defence against unsolicited answers has no blind spot.
// The Transport reads an idle connection in a goroutine of its own and
// closes it when bytes arrive that no request asked for; but when the
// next request is written before that goroutine has run, the stray bytes
// are read as that request's answer, and every later answer on the
// connection is one behind. A guarded connection looks at its socket
// before the first write of each request (one system call) and fails that
// write, with nothing sent, when bytes or an end of stream are waiting:
// the Transport then closes the connection and, for a request it may
// send again, uses another.
//
// Only for connections without TLS: below TLS, waiting bytes may be the
// server's session tickets.
func Guard(nc net.Conn) net.Conn {
	return &guarded{Conn: nc, probe: newProber(nc)}
}

type guarded struct {
	net.Conn
	probe prober
	// read is set when bytes were read since the last request was
	// written: the next request follows an answer.
	read atomic.Bool
}

func (g *guarded) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	if n > 0 {
		g.read.Store(true)
	}
	return n, err
}

func (g *guarded) Write(p []byte) (int, error) {
	if startsRequest(p) && g.read.Swap(false) && g.probe.ok() {
		switch g.probe.state() {
		case data:
			return 0, fmt.Errorf("%w before the request was written", ErrExtraBytes)
		case finished:
			return 0, fmt.Errorf("upstream closed the connection before the request was written: %w", net.ErrClosed)
		}
	}
	return g.Conn.Write(p)
}

// startsRequest reports whether p starts like a request line, a method of
// capitals and a space: the Transport writes a request's head first, and
// a body that an upstream answers early (a 413 to a large upload) is not
// taken for a new request.
func startsRequest(p []byte) bool {
	for i := 0; i < len(p) && i < 16; i++ {
		switch b := p[i]; {
		case b == ' ':
			return i >= 3
		case b < 'A' || b > 'Z':
			return false
		}
	}
	return false
}
