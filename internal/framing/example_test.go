package framing_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/ficuslabs/ficus/internal/framing"
)

// A server refuses a request with both Content-Length and
// Transfer-Encoding, and closes the connection after the 400.
func Example() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{
		Handler:     framing.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "served\n") })),
		ConnContext: framing.ConnContext,
	}
	go srv.Serve(framing.Listener(ln))
	defer srv.Close()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	answer, _ := io.ReadAll(conn) // until the server closes the connection
	status, _, _ := strings.Cut(string(answer), "\r\n")
	fmt.Println(status)
	fmt.Println(strings.Count(string(answer), "HTTP/1.1 "), "answer")
	// Output:
	// HTTP/1.1 400 Bad Request
	// 1 answer
}
