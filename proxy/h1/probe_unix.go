//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package h1

import (
	"net"
	"syscall"
)

// prober looks at a connection's socket without blocking and without
// taking anything from it: a recv with MSG_PEEK|MSG_DONTWAIT, one system
// call of about a microsecond. The function handed to the raw connection
// is made once per connection, so a look allocates nothing.
type prober struct {
	raw  syscall.RawConn // nil: the connection cannot be looked at
	look func(fd uintptr)
	got  readiness
	buf  [1]byte
}

func newProber(nc net.Conn) prober {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return prober{}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return prober{}
	}
	return prober{raw: raw}
}

// ok reports whether the connection can be looked at; one that cannot is
// never kept idle, since nothing would tell that it turned readable.
func (p *prober) ok() bool { return p.raw != nil }

// state looks at the socket now.
func (p *prober) state() readiness {
	if p.raw == nil {
		return finished
	}
	if p.look == nil {
		p.look = func(fd uintptr) {
			n, _, err := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch {
			case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
				p.got = quiet
			case err != nil || n == 0:
				p.got = finished
			default:
				p.got = data
			}
		}
	}
	// Control, not Read: Read would wait for the lock that a reader
	// blocked on the connection (http.Transport's) holds.
	if err := p.raw.Control(p.look); err != nil {
		return finished
	}
	return p.got
}
