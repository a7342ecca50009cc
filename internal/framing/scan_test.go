package framing

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// goRequests parses stream as net/http's server does, request after
// request, bodies read whole, and returns the requests that reach a
// handler (not "OPTIONS *") in order, and whether the stream ended
// cleanly after the last one.
func goRequests(stream []byte) (reqs []*http.Request, clean bool) {
	br := bufio.NewReader(bytes.NewReader(stream))
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return reqs, true
		}
		r, err := http.ReadRequest(br)
		if err != nil || r.ProtoMajor != 1 { // the server refuses other versions and closes
			return reqs, false
		}
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return reqs, false
		}
		if r.Method == "OPTIONS" && r.RequestURI == "*" {
			continue
		}
		reqs = append(reqs, r)
	}
}

// scanAll feeds stream to a scanner in pieces of step bytes.
func scanAll(stream []byte, step int) (s *scanner, bad int64) {
	s = &scanner{}
	for len(stream) > 0 && bad == 0 {
		n := min(step, len(stream))
		bad = s.scan(stream[:n])
		stream = stream[n:]
	}
	return s, bad
}

// FuzzScan holds the scanner to net/http's parser: on a stream net/http
// reads whole, the scanner counts the same requests and ends between
// requests, unless it refused one; it refuses only a request net/http
// took as chunked or as HTTP/1.0, one with a Content-Length it cannot
// read for sure (folded, or too long to keep), or one after it lost track
// of the framing; never a plain one it followed.
func FuzzScan(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\nHost: x\n\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n Content-Length: 4\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
	} {
		f.Add([]byte(seed), uint8(7))
	}
	f.Fuzz(func(t *testing.T, stream []byte, step uint8) {
		reqs, clean := goRequests(stream)
		s, bad := scanAll(stream, int(step)+1)
		if bad == 0 && clean && (s.heads != int64(len(reqs)) || s.state != stHead || s.inHead || s.lineLen != 0) {
			t.Fatalf("net/http read %d requests; the scanner counted %d and ended in state %d (in a head %t, line %d bytes)",
				len(reqs), s.heads, s.state, s.inHead, s.lineLen)
		}
		if bad >= 1 && bad <= int64(len(reqs)) {
			r := reqs[bad-1]
			if len(r.TransferEncoding) == 0 && r.ProtoAtLeast(1, 1) && !folded(stream) && !longCL(stream) {
				t.Fatalf("refused request %d (%s %s %s), which net/http read as plain", bad, r.Method, r.RequestURI, r.Proto)
			}
		}
	})
}

// folded reports whether stream has an obs-folded line: the scanner
// refuses a Content-Length folded onto the next line (net/http unfolds it;
// nginx refuses every folded field).
func folded(stream []byte) bool {
	return strings.Contains(string(stream), "\n ") || strings.Contains(string(stream), "\n\t")
}

// longCL reports whether stream has a Content-Length line the scanner
// cannot keep whole: it refuses those rather than guess.
func longCL(stream []byte) bool {
	for line := range strings.Lines(string(stream)) {
		if len(line) > lineKeep && hasFieldName([]byte(line), "content-length:") {
			return true
		}
	}
	return false
}

func TestScanSplitsAnywhere(t *testing.T) {
	t.Parallel()
	stream := []byte("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" +
		"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"GET /c HTTP/1.0\r\nHost: x\r\n\r\n" +
		"POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	for step := 1; step <= len(stream); step++ {
		if _, bad := scanAll(stream, step); bad != 4 {
			t.Fatalf("in pieces of %d bytes: refused request %d, want 4", step, bad)
		}
	}
}

func TestChunkSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line string
		long bool
		n    int64
		ok   bool
	}{
		{"0", false, 0, true},
		{"1a", false, 26, true},
		{"1A;name=value", false, 26, true},
		{"5  ", false, 5, true},
		{"5 ;x", false, 0, false}, // net/http cuts the extension, then finds "5 "
		{"", false, 0, false},
		{"zz", false, 0, false},
		{"-1", false, 0, false},
		{"fffffffffffffff", false, 1<<60 - 1, true},
		{"1000000000000000", false, 0, false},
		{"5;" + strings.Repeat("x", 100), true, 5, true},
		{"5" + strings.Repeat(" ", 100), true, 0, false},
		{"5\r", false, 0, false},
	} {
		n, ok := chunkSize([]byte(tc.line), tc.long)
		if n != tc.n || ok != tc.ok {
			t.Errorf("chunkSize(%q, %t) = %d, %t; want %d, %t", tc.line, tc.long, n, ok, tc.n, tc.ok)
		}
	}
}

// typical is a request as the proxy's benchmark clients send it, 400
// bytes.
var typical = func() []byte {
	body := `{"customer":"acme","part":"bracket-42","quantity":100,"rush":false}`
	return []byte("POST /api/orders HTTP/1.1\r\nHost: mes.example:8080\r\nUser-Agent: bench/1.0\r\n" +
		"Authorization: Bearer 0123456789abcdef0123456789abcdef\r\nContent-Type: application/json\r\n" +
		"Accept: application/json\r\nAccept-Encoding: gzip\r\nIdempotency-Key: \"4f6c1a2e-5b7d-4c3e-9a8b-1d2e3f4a5b6c\"\r\n" +
		"X-Request-Id: 7d1e2f3a4b5c6d7e8f901a2b3c4d5e6f\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

// BenchmarkScan is the guard's cost per request on a keep-alive
// connection: one typical head and a small body, as the server reads it.
func BenchmarkScan(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(typical)))
	var s scanner
	for b.Loop() {
		if s.scan(typical) != 0 {
			b.Fatal("refused")
		}
	}
}
