package h1

import (
	"net"
	"testing"
)

// BenchmarkProbe is the cost of the look at an idle connection's socket
// that every reuse and every returned connection pays (one recv with
// MSG_PEEK|MSG_DONTWAIT).
func BenchmarkProbe(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			var buf [1]byte
			c.Read(buf[:]) // until the client closes
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	p := newProber(c)
	b.ReportAllocs()
	for b.Loop() {
		if p.state() != quiet {
			b.Fatal("an idle connection looked readable")
		}
	}
}
