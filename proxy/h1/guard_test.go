package h1

import (
	"errors"
	"io"
	"net"
	"testing"
)

func TestStartsRequest(t *testing.T) {
	t.Parallel()
	for p, want := range map[string]bool{
		"GET / HTTP/1.1\r\n": true, "OPTIONS * HTTP/1.1": true, "POST /x": true,
		"get / HTTP/1.1": false, "{\"a\":1}": false, "GE": false, "": false, "AB /": false,
	} {
		if got := startsRequest([]byte(p)); got != want {
			t.Errorf("startsRequest(%q) = %t, want %t", p, got, want)
		}
	}
}

// A guarded connection on which bytes wait after an answer refuses to
// write the next request, and sends nothing of it.
func TestGuardRefusesRequestAfterStrayBytes(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		io.WriteString(c, "answer")
		io.WriteString(c, "stray")
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	g := Guard(nc)
	buf := make([]byte, len("answer"))
	if _, err := io.ReadFull(g, buf); err != nil {
		t.Fatal(err)
	}
	// The stray bytes may still be on their way: wait until they are
	// readable, by peeking with the prober itself.
	for i := 0; g.(*guarded).probe.state() != data; i++ {
		if i == 1_000_000 {
			t.Fatal("the stray bytes never became readable")
		}
	}
	if _, err := g.Write([]byte("GET / HTTP/1.1\r\n\r\n")); !errors.Is(err, ErrExtraBytes) {
		t.Errorf("write after stray bytes: %v, want ErrExtraBytes", err)
	}
	g.Close()
	if s := <-got; s != "" {
		t.Errorf("the server received %q, want nothing", s)
	}
}
