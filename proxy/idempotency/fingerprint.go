package idempotency

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"slices"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// Fingerprint identifies a request's payload, so that a key reused with
// another request can be told apart from a retry: the hex SHA-256 of the
// method, the path with its query, and the body. A JSON body (content type
// application/json or any +json type) is hashed in canonical form: objects
// with their members sorted by key, no insignificant whitespace, numbers as
// written, strings re-encoded one way; so {"a":1, "b":2} and {"b":2,"a":1}
// are the same request while 1 and 1.0 are not. Any other body, and a JSON
// body that does not parse, is hashed as it is.
func Fingerprint(method, path string, contentType string, body []byte) string {
	f := fingerprinters.Get().(*fingerprinter)
	defer f.release()
	if isJSON(contentType) {
		if c, ok := f.canonical.canonical(f.body[:0], body); ok {
			body, f.body = c, c
		}
	}
	// Each field is prefixed by its length, so that no two requests hash
	// the same bytes.
	head := f.head[:0]
	head = binary.AppendUvarint(head, uint64(len(method)))
	head = append(head, method...)
	head = binary.AppendUvarint(head, uint64(len(path)))
	head = append(head, path...)
	head = binary.AppendUvarint(head, uint64(len(body)))
	f.head = head
	f.hash.Reset()
	f.hash.Write(head)
	f.hash.Write(body)
	f.sum = f.hash.Sum(f.sum[:0])
	var digits [2 * sha256.Size]byte
	hex.Encode(digits[:], f.sum)
	return string(digits[:])
}

// fingerprinter is what Fingerprint reuses from one call to the next: the
// parser's stacks, the buffers and the hash.
type fingerprinter struct {
	canonical canonicalizer
	head      []byte // method, path and body length
	body      []byte // the body in canonical form
	hash      hash.Hash
	sum       []byte
}

var fingerprinters = sync.Pool{New: func() any { return &fingerprinter{hash: sha256.New()} }}

// maxKeptBuffer bounds the buffers a fingerprinter keeps for the next
// call; a larger one, from an unusually large request, is let go.
const maxKeptBuffer = 64 << 10

func (f *fingerprinter) release() {
	f.canonical.in = nil // the caller's body
	if cap(f.body) > maxKeptBuffer {
		f.body = nil
	}
	if cap(f.head) > maxKeptBuffer {
		f.head = nil
	}
	if cap(f.canonical.scratch) > maxKeptBuffer {
		f.canonical.scratch = nil
	}
	if cap(f.canonical.members) > maxKeptBuffer/24 { // 24 bytes a member
		f.canonical.members = nil
	}
	fingerprinters.Put(f)
}

// isJSON reports whether the media type of contentType is JSON.
func isJSON(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.TrimSpace(mt)
	if strings.EqualFold(mt, "application/json") {
		return true
	}
	const suffix = "+json"
	return strings.Contains(mt, "/") && len(mt) > len(suffix) &&
		strings.EqualFold(mt[len(mt)-len(suffix):], suffix)
}

// maxJSONDepth bounds nesting; deeper documents are hashed raw.
const maxJSONDepth = 512

// canonicalJSON returns the canonical form of the JSON document in, or false
// when in is not one valid JSON value (RFC 8259, UTF-8) nested at most
// maxJSONDepth deep. canonicalJSON of its own output returns it unchanged.
func canonicalJSON(in []byte) ([]byte, bool) {
	var c canonicalizer
	return c.canonical(nil, in)
}

// canonicalizer is a recursive-descent JSON parser that writes the canonical
// form as it goes.
type canonicalizer struct {
	in  []byte
	pos int
	// members is a stack of the members of the objects being parsed, and
	// scratch the buffer objects are sorted through; both are reused.
	members []member
	scratch []byte
}

// canonical appends the canonical form of in to dst[:0], as canonicalJSON
// returns it.
func (c *canonicalizer) canonical(dst, in []byte) ([]byte, bool) {
	c.in, c.pos, c.members = in, 0, c.members[:0]
	c.space()
	out, ok := c.value(slices.Grow(dst[:0], len(in)), 0)
	if !ok {
		return nil, false
	}
	c.space()
	if c.pos != len(c.in) {
		return nil, false
	}
	return out, true
}

func (c *canonicalizer) space() {
	for c.pos < len(c.in) {
		switch c.in[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

// next returns the byte at pos, or 0 at the end.
func (c *canonicalizer) next() byte {
	if c.pos < len(c.in) {
		return c.in[c.pos]
	}
	return 0
}

func (c *canonicalizer) value(dst []byte, depth int) ([]byte, bool) {
	switch b := c.next(); {
	case b == '{':
		return c.object(dst, depth+1)
	case b == '[':
		return c.array(dst, depth+1)
	case b == '"':
		return c.string(dst)
	case b == '-' || b >= '0' && b <= '9':
		return c.number(dst)
	case b == 't':
		return c.literal(dst, "true")
	case b == 'f':
		return c.literal(dst, "false")
	case b == 'n':
		return c.literal(dst, "null")
	}
	return nil, false
}

func (c *canonicalizer) literal(dst []byte, lit string) ([]byte, bool) {
	if !bytes.HasPrefix(c.in[c.pos:], []byte(lit)) {
		return nil, false
	}
	c.pos += len(lit)
	return append(dst, lit...), true
}

// member is where one object member sits in the output.
type member struct{ start, keyEnd, end int }

func (c *canonicalizer) object(dst []byte, depth int) ([]byte, bool) {
	if depth > maxJSONDepth {
		return nil, false
	}
	c.pos++ // {
	dst = append(dst, '{')
	start := len(dst)
	base := len(c.members)
	defer func() { c.members = c.members[:base] }()
	c.space()
	if c.next() == '}' {
		c.pos++
		return append(dst, '}'), true
	}
	for {
		c.space()
		if c.next() != '"' {
			return nil, false
		}
		m := member{start: len(dst)}
		var ok bool
		if dst, ok = c.string(dst); !ok {
			return nil, false
		}
		m.keyEnd = len(dst)
		c.space()
		if c.next() != ':' {
			return nil, false
		}
		c.pos++
		dst = append(dst, ':')
		c.space()
		if dst, ok = c.value(dst, depth); !ok {
			return nil, false
		}
		m.end = len(dst)
		c.members = append(c.members, m)
		c.space()
		if c.next() == '}' {
			c.pos++
			break
		}
		if c.next() != ',' {
			return nil, false
		}
		c.pos++
		dst = append(dst, ',')
	}
	// Members were written in input order; sort them by key (stably, so
	// that duplicate keys keep their order and their meaning). Keys are
	// compared in canonical form, without their quotes.
	members := c.members[base:]
	byKey := func(a, b member) int {
		return bytes.Compare(dst[a.start+1:a.keyEnd-1], dst[b.start+1:b.keyEnd-1])
	}
	if !slices.IsSortedFunc(members, byKey) {
		slices.SortStableFunc(members, byKey)
		c.scratch = append(c.scratch[:0], dst[start:]...)
		dst = dst[:start]
		for i, m := range members {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, c.scratch[m.start-start:m.end-start]...)
		}
	}
	return append(dst, '}'), true
}

func (c *canonicalizer) array(dst []byte, depth int) ([]byte, bool) {
	if depth > maxJSONDepth {
		return nil, false
	}
	c.pos++ // [
	dst = append(dst, '[')
	c.space()
	if c.next() == ']' {
		c.pos++
		return append(dst, ']'), true
	}
	for {
		c.space()
		var ok bool
		if dst, ok = c.value(dst, depth); !ok {
			return nil, false
		}
		c.space()
		switch c.next() {
		case ',':
			c.pos++
			dst = append(dst, ',')
		case ']':
			c.pos++
			return append(dst, ']'), true
		default:
			return nil, false
		}
	}
}

// number copies a number as written, after checking its syntax.
func (c *canonicalizer) number(dst []byte) ([]byte, bool) {
	start := c.pos
	digits := func() bool {
		n := 0
		for c.pos < len(c.in) && c.in[c.pos] >= '0' && c.in[c.pos] <= '9' {
			c.pos++
			n++
		}
		return n > 0
	}
	if c.next() == '-' {
		c.pos++
	}
	switch b := c.next(); {
	case b == '0':
		c.pos++
	case b >= '1' && b <= '9':
		digits()
	default:
		return nil, false
	}
	if c.next() == '.' {
		c.pos++
		if !digits() {
			return nil, false
		}
	}
	if b := c.next(); b == 'e' || b == 'E' {
		c.pos++
		if b := c.next(); b == '+' || b == '-' {
			c.pos++
		}
		if !digits() {
			return nil, false
		}
	}
	return append(dst, c.in[start:c.pos]...), true
}

// string decodes a string and writes it one way: UTF-8 as is, escapes only
// for '"', '\\' and control characters (the short forms \b \f \n \r \t,
// else \u00xx), and a lone surrogate, which UTF-8 cannot hold, as \uxxxx.
func (c *canonicalizer) string(dst []byte) ([]byte, bool) {
	c.pos++ // "
	dst = append(dst, '"')
	for c.pos < len(c.in) {
		b := c.in[c.pos]
		switch {
		case b == '"':
			c.pos++
			return append(dst, '"'), true
		case b == '\\':
			var ok bool
			if dst, ok = c.escape(dst); !ok {
				return nil, false
			}
		case b < 0x20:
			return nil, false
		case b < utf8.RuneSelf:
			dst = append(dst, b)
			c.pos++
		default:
			r, size := utf8.DecodeRune(c.in[c.pos:])
			if r == utf8.RuneError && size == 1 {
				return nil, false
			}
			dst = append(dst, c.in[c.pos:c.pos+size]...)
			c.pos += size
		}
	}
	return nil, false
}

// escape decodes the escape sequence at pos.
func (c *canonicalizer) escape(dst []byte) ([]byte, bool) {
	if c.pos+1 >= len(c.in) {
		return nil, false
	}
	e := c.in[c.pos+1]
	c.pos += 2
	switch e {
	case '"', '\\', '/':
		return appendRune(dst, rune(e)), true
	case 'b':
		return appendRune(dst, '\b'), true
	case 'f':
		return appendRune(dst, '\f'), true
	case 'n':
		return appendRune(dst, '\n'), true
	case 'r':
		return appendRune(dst, '\r'), true
	case 't':
		return appendRune(dst, '\t'), true
	case 'u':
	default:
		return nil, false
	}
	r, ok := c.hex4()
	if !ok {
		return nil, false
	}
	if !utf16.IsSurrogate(r) {
		return appendRune(dst, r), true
	}
	if r < 0xDC00 && bytes.HasPrefix(c.in[c.pos:], []byte(`\u`)) {
		save := c.pos
		c.pos += 2
		if lo, ok := c.hex4(); ok && lo >= 0xDC00 && lo <= 0xDFFF {
			return utf8.AppendRune(dst, utf16.DecodeRune(r, lo)), true
		}
		c.pos = save
	}
	return appendEscape(dst, r), true
}

// hex4 reads four hex digits.
func (c *canonicalizer) hex4() (rune, bool) {
	if c.pos+4 > len(c.in) {
		return 0, false
	}
	var r rune
	for _, b := range c.in[c.pos : c.pos+4] {
		switch {
		case b >= '0' && b <= '9':
			r = r<<4 | rune(b-'0')
		case b >= 'a' && b <= 'f':
			r = r<<4 | rune(b-'a'+10)
		case b >= 'A' && b <= 'F':
			r = r<<4 | rune(b-'A'+10)
		default:
			return 0, false
		}
	}
	c.pos += 4
	return r, true
}

// appendRune writes a decoded character of a string.
func appendRune(dst []byte, r rune) []byte {
	switch r {
	case '"':
		return append(dst, '\\', '"')
	case '\\':
		return append(dst, '\\', '\\')
	case '\b':
		return append(dst, '\\', 'b')
	case '\f':
		return append(dst, '\\', 'f')
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	if r < 0x20 {
		return appendEscape(dst, r)
	}
	return utf8.AppendRune(dst, r)
}

// appendEscape writes r as \uxxxx.
func appendEscape(dst []byte, r rune) []byte {
	const hexDigits = "0123456789abcdef"
	return append(dst, '\\', 'u', hexDigits[r>>12&0xF], hexDigits[r>>8&0xF], hexDigits[r>>4&0xF], hexDigits[r&0xF])
}
