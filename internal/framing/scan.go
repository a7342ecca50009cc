package framing

import "bytes"

// Scanner states: where in the request stream the next byte is.
const (
	stHead      = iota // in a request head, or before one
	stBody             // in a body of Content-Length: remain bytes
	stChunkSize        // in a chunk-size line
	stChunkData        // in chunk data: remain bytes
	stChunkEnd         // in the CRLF after chunk data: remain bytes of it
	stTrailer          // in the trailer section after the last chunk
	stOff              // done: the server is to close the connection
)

// lineKeep is how much of a line the scanner keeps: enough for a field
// name it looks for and a Content-Length value with some whitespace, or a
// chunk size with its digits.
const lineKeep = 64

// scanner follows a stream of HTTP/1.x requests as net/http's server reads
// it: heads, bodies by Content-Length, chunked bodies with their trailers.
// It keeps the start of the current line and a few fields per head; it
// never holds more than that, however long the lines.
type scanner struct {
	state  uint8
	remain int64

	line     [lineKeep]byte // the start of the current line
	n        int            // bytes in line
	lineLen  int            // bytes of the current line so far, CR included
	last     byte           // the line's last byte so far
	tail     [10]byte       // the request line's last bytes so far
	inHead   bool           // the request line was seen
	http10   bool           // the request is HTTP/1.0 (or 0.x)
	options  bool           // "OPTIONS *", which net/http answers itself
	te       bool           // Transfer-Encoding is present
	cl       int64          // the Content-Length, -1 when absent
	clFields bool           // a Content-Length field was seen
	unsure   bool           // the framing cannot be told: a field too long, values that differ

	heads int64 // heads seen that reach a handler
}

// scan follows p, the next bytes of the stream. When it finds a head with
// ambiguous framing, or loses track of the framing, it returns the number
// (counted from 1, among requests that reach a handler) of the first
// request to reject, and stops.
func (s *scanner) scan(p []byte) int64 {
	for len(p) > 0 {
		switch s.state {
		case stBody, stChunkData:
			if int64(len(p)) < s.remain {
				s.remain -= int64(len(p))
				return 0
			}
			p = p[s.remain:]
			if s.state == stBody {
				s.state = stHead
			} else {
				s.state, s.remain = stChunkEnd, 2
			}
		case stChunkEnd:
			want := byte('\n')
			if s.remain == 2 {
				want = '\r'
			}
			if p[0] != want {
				return s.lost() // net/http fails the body here
			}
			p = p[1:]
			if s.remain--; s.remain == 0 {
				s.state = stChunkSize
			}
		case stOff:
			return 0
		default: // a line: head, chunk size or trailer
			i := bytes.IndexByte(p, '\n')
			if i > 0 && s.state == stHead && s.inHead && s.lineLen == 0 {
				// A whole field line: only Content-Length and
				// Transfer-Encoding matter, and the empty line.
				if c := p[0] | 0x20; c != 'c' && c != 't' && p[0] != '\r' {
					p = p[i+1:]
					continue
				}
			}
			seg := p
			if i >= 0 {
				seg = p[:i]
			}
			s.add(seg)
			if i < 0 {
				return 0
			}
			p = p[i+1:]
			if at := s.endLine(); at != 0 {
				return at
			}
		}
	}
	return 0
}

// add appends seg to the current line.
func (s *scanner) add(seg []byte) {
	if len(seg) == 0 {
		return
	}
	if s.n < lineKeep {
		s.n += copy(s.line[s.n:], seg)
	}
	s.lineLen += len(seg)
	s.last = seg[len(seg)-1]
	if s.state == stHead && !s.inHead {
		if len(seg) >= len(s.tail) {
			copy(s.tail[:], seg[len(seg)-len(s.tail):])
		} else {
			copy(s.tail[:], s.tail[len(seg):])
			copy(s.tail[len(s.tail)-len(seg):], seg)
		}
	}
}

// endLine handles the line just ended, then starts a new one.
func (s *scanner) endLine() int64 {
	n, length := s.n, s.lineLen
	crlf := length > 0 && s.last == '\r'
	if crlf {
		length--
		n = min(n, length)
	}
	line := s.line[:n]
	long := length > n // more of it than was kept
	tail := s.tail
	if s.last == '\r' {
		copy(tail[1:], s.tail[:len(s.tail)-1])
	}
	s.n, s.lineLen, s.last = 0, 0, 0
	switch s.state {
	case stChunkSize:
		size, ok := chunkSize(line, long)
		switch {
		case !ok || !crlf:
			return s.lost()
		case size == 0:
			s.state = stTrailer
		default:
			s.state, s.remain = stChunkData, size
		}
		return 0
	case stTrailer:
		if length == 0 {
			s.state = stHead
		}
		return 0
	}
	switch {
	case length == 0 && !s.inHead:
		return 0 // an empty line before a request line
	case length == 0:
		return s.endHead()
	case !s.inHead:
		s.tail = [len(s.tail)]byte{}
		s.inHead = true
		s.cl = -1
		s.options = bytes.HasPrefix(line, []byte("OPTIONS * "))
		// net/http ignores Transfer-Encoding below HTTP/1.1.
		v := tail[2:] // "HTTP/M.m"
		s.http10 = tail[1] == ' ' && string(v[:5]) == "HTTP/" && v[6] == '.' && (v[5] == '0' || v[5] == '1' && v[7] == '0')
	case line[0] == ' ' || line[0] == '\t':
		// obs-fold: the rest of the field above, never a field of its own
	case hasFieldName(line, "content-length:"):
		// A value folded onto the next line is empty here: refused
		// as unsure, as nginx refuses every folded field.
		n, ok := parseLength(line[len("content-length:"):])
		if long || !ok || (s.clFields && n != s.cl) {
			s.unsure = true
		}
		s.cl, s.clFields = n, true
	case hasFieldName(line, "transfer-encoding:"):
		s.te = true
	}
	return 0
}

// endHead decides on the head just ended and moves to its body.
func (s *scanner) endHead() int64 {
	if !s.options {
		s.heads++
	}
	bad := s.unsure || (s.te && (s.clFields || s.http10))
	te, cl, options := s.te, s.cl, s.options
	s.inHead, s.http10, s.options, s.te, s.cl, s.clFields, s.unsure = false, false, false, false, -1, false, false
	switch {
	case bad && options:
		// net/http answers it itself: reject the next one.
		s.state = stOff
		return s.heads + 1
	case bad:
		s.state = stOff
		return s.heads
	}
	switch {
	case te:
		s.state = stChunkSize
	case cl > 0:
		s.state, s.remain = stBody, cl
	}
	return 0
}

// lost gives up following the stream: whatever request comes next on the
// connection is rejected.
func (s *scanner) lost() int64 {
	s.state = stOff
	return s.heads + 1
}

// hasFieldName reports whether line starts with name (lower case, with
// its colon), in any case.
func hasFieldName(line []byte, name string) bool {
	if len(line) < len(name) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if line[i]|0x20 != name[i] { // '-' and ':' are unchanged by it
			return false
		}
	}
	return true
}

// parseLength parses a Content-Length value with its whitespace, as
// net/http does: decimal digits only.
func parseLength(v []byte) (int64, bool) {
	v = bytes.Trim(v, " \t")
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// chunkSize parses a chunk-size line (CRLF removed), with extensions, as
// net/http does: trailing whitespace, then any extension, is cut off, and
// the rest must be hex digits; more than 15 are taken for an error.
// long says line holds only the start of a longer line.
func chunkSize(line []byte, long bool) (int64, bool) {
	if bytes.IndexByte(line, '\r') >= 0 {
		return 0, false
	}
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	} else if long {
		return 0, false
	} else {
		line = bytes.TrimRight(line, " \t")
	}
	if len(line) == 0 || len(line) > 15 { // 15 hex digits keep it an int64
		return 0, false
	}
	var n int64
	for _, c := range line {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c|0x20 && c|0x20 <= 'f':
			c = c | 0x20 - 'a' + 10
		default:
			return 0, false
		}
		n = n<<4 | int64(c)
	}
	return n, true
}
