package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// plainAnswers are answers readPlainHead takes.
var plainAnswers = []string{
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
	"HTTP/1.1 201 Created\r\nLocation: /orders/1\r\ncontent-length: 0\r\nDate: Mon, 23 Nov 2026 03:33:23 GMT\r\n\r\n",
	"HTTP/1.1 404\r\nContent-Length: 3\r\nVary: Accept\r\nvary:  Origin \r\nX-Empty:\r\n\r\nnoXYZ",
	"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 000\r\n\r\n",
	"HTTP/1.1 200 Caf\xc3\xa9\r\nX-City: K\xc3\xb6ln\t\r\nX!#$%&'*+.^_`|~: 1\r\nContent-Length: 1\r\n\r\n1",
}

// unusualAnswers are left to http.ReadResponse.
var unusualAnswers = []string{
	"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\n\r\nread until the connection closes",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
	"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n{}",
	"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
	"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Folded: a\r\n b\r\n\r\n{}",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nBad Name: a\r\n\r\n{}",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Ctl: a\x00b\r\n\r\n{}",
	"HTTP/1.1 200 OK\nContent-Length: 2\n\n{}",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",             // the head is not all here
	"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\n{}",      // a status of four digits
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n:x\r\n\r\n{}", // no name
	"HTTP/1.1 200 OK\r\nContent-Length: 2" + strings.Repeat("\r\nX-Many: 1", maxPlainFields) + "\r\n\r\n{}",
}

func TestReadPlainHead(t *testing.T) {
	for _, answer := range plainAnswers {
		if !samePlainHead(t, []byte(answer), http.MethodGet) {
			t.Errorf("readPlainHead left %q to http.ReadResponse", answer)
		}
	}
	for _, answer := range unusualAnswers {
		if samePlainHead(t, []byte(answer), http.MethodGet) {
			t.Errorf("readPlainHead took %q", answer)
		}
	}
	if samePlainHead(t, []byte(plainAnswers[0]), http.MethodHead) {
		t.Error("readPlainHead took the answer to a HEAD request, which has no body")
	}
}

// TestReadPlainHeadReplacesFields checks that the upstream's fields take
// the place of fields of the same name in the client's header map, and
// that the values of one name do not share room with the next.
func TestReadPlainHeadReplacesFields(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nX-Request-Id: theirs\r\nVary: a\r\nContent-Length: 0\r\nVary: b\r\n\r\n"))
	br.Peek(1)
	h := http.Header{"X-Request-Id": {"ours"}, "Ratelimit": {"r"}}
	if _, _, ok := readPlainHead(br, http.MethodGet, h); !ok {
		t.Fatal("not taken")
	}
	want := http.Header{"X-Request-Id": {"theirs"}, "Ratelimit": {"r"}, "Vary": {"a", "b"}, "Content-Length": {"0"}}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("header = %v, want %v", h, want)
	}
	h.Add("Vary", "c")
	if h.Get("Content-Length") != "0" || h.Get("X-Request-Id") != "theirs" {
		t.Fatalf("appending to one field changed another: %v", h)
	}
}

// TestLengthBodyCutShort checks that a body that ends before its length
// is an unexpected EOF, not a whole body.
func TestLengthBodyCutShort(t *testing.T) {
	b := &lengthBody{br: bufio.NewReader(strings.NewReader("abc")), n: 5}
	got, err := io.ReadAll(b)
	if string(got) != "abc" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read %q, %v; want abc and an unexpected EOF", got, err)
	}
}

// FuzzPlainHead checks readPlainHead against http.ReadResponse: an answer
// it takes, http.ReadResponse reads the same (status, fields, body and
// where the next answer starts); one it leaves, it has not read at all.
func FuzzPlainHead(f *testing.F) {
	for _, a := range plainAnswers {
		f.Add([]byte(a+"HTTP/1.1 200 OK\r\n"), false)
	}
	for _, a := range unusualAnswers {
		f.Add([]byte(a), false)
	}
	f.Add([]byte(plainAnswers[0]), true)
	f.Fuzz(func(t *testing.T, answer []byte, head bool) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		samePlainHead(t, answer, method)
	})
}

// samePlainHead reads answer with readPlainHead and, if it takes it, with
// http.ReadResponse, fails t where they differ, and reports whether
// readPlainHead took it.
func samePlainHead(t *testing.T, answer []byte, method string) bool {
	t.Helper()
	br := bufio.NewReaderSize(bytes.NewReader(answer), 4096)
	br.Peek(1) // as roundTrip does: whatever has arrived is buffered
	buffered := br.Buffered()
	h := http.Header{"X-Ficus": {"kept"}}
	status, length, ok := readPlainHead(br, method, h)
	if !ok {
		if br.Buffered() != buffered || !reflect.DeepEqual(h, http.Header{"X-Ficus": {"kept"}}) {
			t.Fatalf("readPlainHead left %q to http.ReadResponse but read from it or changed the header", answer)
		}
		return false
	}
	wbr := bufio.NewReaderSize(bytes.NewReader(answer), 4096)
	resp, err := http.ReadResponse(wbr, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("readPlainHead took %q, which http.ReadResponse refuses: %v", answer, err)
	}
	if status != resp.StatusCode || length != resp.ContentLength || resp.Close || resp.TransferEncoding != nil || resp.Trailer != nil {
		t.Fatalf("%q: readPlainHead: status %d, length %d; http.ReadResponse: %d, %d, close %t, %v, %v",
			answer, status, length, resp.StatusCode, resp.ContentLength, resp.Close, resp.TransferEncoding, resp.Trailer)
	}
	want := resp.Header.Clone()
	if _, ok := want["X-Ficus"]; !ok {
		want["X-Ficus"] = []string{"kept"}
	}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("%q: readPlainHead's fields %v, http.ReadResponse's %v", answer, h, want)
	}
	body, err := io.ReadAll(&lengthBody{br: br, n: length})
	wantBody, wantErr := io.ReadAll(resp.Body)
	if !bytes.Equal(body, wantBody) || (err == nil) != (wantErr == nil) {
		t.Fatalf("%q: body %q (%v), http.ReadResponse's %q (%v)", answer, body, err, wantBody, wantErr)
	}
	if err == nil {
		rest, _ := io.ReadAll(br)
		wantRest, _ := io.ReadAll(wbr)
		if !bytes.Equal(rest, wantRest) {
			t.Fatalf("%q: after the answer %q is left, after http.ReadResponse's %q", answer, rest, wantRest)
		}
	}
	return true
}
