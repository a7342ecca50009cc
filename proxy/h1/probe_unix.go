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
	look func(fd uintptr) bool
	got  readiness
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
		p.look = func(fd uintptr) bool {
			var b [1]byte
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch {
			case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
				p.got = quiet
			case err != nil || n == 0:
				p.got = finished
			default:
				p.got = data
			}
			return true
		}
	}
	if err := p.raw.Read(p.look); err != nil {
		return finished
	}
	return p.got
}
