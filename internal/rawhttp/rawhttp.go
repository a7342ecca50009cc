// Package rawhttp sends bytes a test writes by hand, HTTP/1 requests well
// or badly formed, on a connection of their own, and reads back what the
// server answers: for tests of request framing, pipelining and smuggling,
// which net/http's client would refuse to send.
package rawhttp

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Deadline bounds one Exchange: the server must answer, or close the
// connection, within it.
const Deadline = 3 * time.Second

// Exchange writes raw on a new connection to addr and reads every answer
// until the server closes the connection or stays silent until Deadline.
// closed tells which: true when the server closed it. Each answer's body
// is read in full and can be read again from Body.
func Exchange(t testing.TB, addr, raw string) (answers []*http.Response, closed bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(Deadline))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			return answers, !(errors.As(err, &ne) && ne.Timeout())
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		answers = append(answers, resp)
	}
}

// Codes returns the status codes of answers, in order.
func Codes(answers []*http.Response) []int {
	codes := make([]int, len(answers))
	for i, a := range answers {
		codes[i] = a.StatusCode
	}
	return codes
}
