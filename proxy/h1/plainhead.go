package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"strings"
)

// RoundTrip reads most answers without http.ReadResponse: an answer
// of the plain kind upstreams give almost always has its head parsed from
// the connection's buffer straight into the client's header map, and its
// body read by length. That saves the Response, its own header map and
// body reader, and a string per header value: a fifth of what a proxied
// request allocates. Everything else, and anything unusual, is left to
// http.ReadResponse.

// maxPlainFields is the most header fields an answer readPlainHead takes
// may have.
const maxPlainFields = 32

// field is a header field of an answer being read, as substrings of the
// answer's head.
type field struct{ name, value string }

// readPlainHead reads the head of the answer in br when br holds it whole
// already and it is plain: "HTTP/1.1" and a status from 200 on, other than
// 204 and 304, to a request other than HEAD; one Content-Length and no
// hop-by-hop field (Connection, Transfer-Encoding, Trailer and the like);
// at most maxPlainFields fields, each a token name, a colon and a value of
// visible characters, spaces and tabs, on lines that end in CRLF. It puts
// the fields in h, in place of what h had under their names, and returns
// the status and the body's length. For any other answer it returns false
// and has read nothing, and h is as it was.
func readPlainHead(br *bufio.Reader, method string, h http.Header) (status int, length int64, ok bool) {
	if method == http.MethodHead {
		return 0, 0, false
	}
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		return 0, 0, false
	}
	head := buf[:end+2] // every line with its CRLF
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	if status, ok = plainStatus(line); !ok {
		return 0, 0, false
	}

	// One string holds every name and value: the fields are substrings of
	// it.
	text := string(rest)
	var fields [maxPlainFields]field
	n, length := 0, int64(-1)
	for len(text) > 0 {
		line, after, _ := strings.Cut(text, "\r\n")
		text = after
		if n == len(fields) {
			return 0, 0, false
		}
		name, value, ok := splitField(line)
		if !ok {
			return 0, 0, false
		}
		switch name {
		case "Content-Length":
			if length >= 0 {
				return 0, 0, false
			}
			if length, ok = parseLength(value); !ok {
				return 0, 0, false
			}
		case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
			"Te", "Trailer", "Transfer-Encoding", "Upgrade":
			return 0, 0, false
		}
		fields[n] = field{name, value}
		n++
	}
	if length < 0 {
		return 0, 0, false
	}
	br.Discard(end + 4)

	// The values of all fields share one slice; each name gets its values
	// in the order they came, capped so that appending to one cannot
	// overwrite the next.
	values := make([]string, n)
	done := 0
	for i := range n {
		name := fields[i].name
		if name == "" {
			continue // taken with an earlier field of its name
		}
		start := done
		for j := i; j < n; j++ {
			if fields[j].name == name {
				values[done] = fields[j].value
				done++
				fields[j].name = ""
			}
		}
		h[name] = values[start:done:done]
	}
	return status, length, true
}

// plainStatus parses a status line "HTTP/1.1 NNN reason" whose status is
// final and has a body.
func plainStatus(line []byte) (int, bool) {
	const proto = "HTTP/1.1 "
	if len(line) < len(proto)+3 || string(line[:len(proto)]) != proto ||
		len(line) > len(proto)+3 && line[len(proto)+3] != ' ' {
		return 0, false
	}
	status := 0
	for _, b := range line[len(proto) : len(proto)+3] {
		if b < '0' || b > '9' {
			return 0, false
		}
		status = status*10 + int(b-'0')
	}
	for _, b := range line[len(proto)+3:] {
		if b != '\t' && (b < ' ' || b == 0x7f) {
			return 0, false
		}
	}
	if status < 200 || status > 999 || status == http.StatusNoContent || status == http.StatusNotModified {
		return 0, false
	}
	return status, true
}

// splitField splits a field line into its name, in canonical form, and its
// value without the spaces around it.
func splitField(line string) (name, value string, ok bool) {
	colon := -1
	for i := 0; i < len(line); i++ {
		if line[i] == ':' {
			colon = i
			break
		}
		if !isTokenByte(line[i]) {
			return "", "", false
		}
	}
	if colon <= 0 {
		return "", "", false
	}
	name, value = line[:colon], line[colon+1:]
	for i := 0; i < len(value); i++ {
		if b := value[i]; b != '\t' && (b < ' ' || b == 0x7f) {
			return "", "", false
		}
	}
	if !isCanonical(name) {
		name = textproto.CanonicalMIMEHeaderKey(name)
	}
	return name, textproto.TrimString(value), true
}

// isTokenByte reports whether b may be part of a field name (RFC 9110
// section 5.6.2).
func isTokenByte(b byte) bool {
	switch {
	case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		return true
	}
	switch b {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// isCanonical reports whether a field name is in the form
// textproto.CanonicalMIMEHeaderKey gives it.
func isCanonical(name string) bool {
	upper := true
	for i := 0; i < len(name); i++ {
		b := name[i]
		if upper && b >= 'a' && b <= 'z' || !upper && b >= 'A' && b <= 'Z' {
			return false
		}
		upper = b == '-'
	}
	return true
}

// parseLength parses a Content-Length value: digits only, at most 18 of
// them.
func parseLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}
