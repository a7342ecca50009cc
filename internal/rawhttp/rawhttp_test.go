package rawhttp

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

func TestExchangeReadsPipelinedAnswersUntilClose(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	defer srv.Close()
	answers, closed := Exchange(t, srv.Listener.Addr().String(),
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !closed || !slices.Equal(Codes(answers), []int{200, 200}) {
		t.Fatalf("answers %v, closed %v; want 200, 200 and closed", Codes(answers), closed)
	}
	for i, want := range []string{"/a", "/b"} {
		if b, _ := io.ReadAll(answers[i].Body); string(b) != want {
			t.Errorf("answer %d: body %q, want %q", i, b, want)
		}
	}
}

func TestServeHandsEachConnectionToTheTest(t *testing.T) {
	t.Parallel()
	s := Serve(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		}
	})
	for range 2 {
		answers, closed := Exchange(t, s.Addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if !closed || !slices.Equal(Codes(answers), []int{204}) {
			t.Fatalf("answers %v, closed %v; want 204 and closed", Codes(answers), closed)
		}
	}
	if n := s.Conns(); n != 2 {
		t.Errorf("Conns() = %d, want 2", n)
	}
}
