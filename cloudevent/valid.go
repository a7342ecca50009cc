package cloudevent

import "strings"

// maxNestingDepth is how deeply encoding/json lets arrays and objects nest;
// validJSON refuses deeper ones as json.Valid does.
const maxNestingDepth = 10000

// scanJSON reports whether data is exactly one JSON value, with optional
// whitespace around it, and whether it holds whitespace outside its strings
// (which json.Compact would remove). It accepts what json.Valid accepts
// (strings are not checked for valid UTF-8, nesting stops at 10000 levels)
// several times faster and without allocating: every event's data is
// checked when the event is validated and again when it is written.
func scanJSON(data []byte) (valid, spaced bool) {
	v := validator{data: data}
	v.space()
	if !v.value(0) {
		return false, v.spaced
	}
	v.space()
	return v.i == len(v.data), v.spaced
}

// validator is a cursor over the JSON being checked.
type validator struct {
	data []byte
	i    int
	// spaced is set once whitespace was skipped.
	spaced bool
}

// peek returns the next byte, or 0 at the end.
func (v *validator) peek() byte {
	if v.i < len(v.data) {
		return v.data[v.i]
	}
	return 0
}

func (v *validator) space() {
	for v.i < len(v.data) {
		switch v.data[v.i] {
		case ' ', '\t', '\n', '\r':
			v.i++
			v.spaced = true
		default:
			return
		}
	}
}

// value reads one value; depth is how many arrays and objects enclose it.
func (v *validator) value(depth int) bool {
	switch v.peek() {
	case '{':
		return v.object(depth)
	case '[':
		return v.array(depth)
	case '"':
		return v.string()
	case 't':
		return v.literal("true")
	case 'f':
		return v.literal("false")
	case 'n':
		return v.literal("null")
	}
	return v.number()
}

func (v *validator) object(depth int) bool {
	if depth >= maxNestingDepth {
		return false
	}
	v.i++ // {
	v.space()
	if v.peek() == '}' {
		v.i++
		return true
	}
	for {
		if v.peek() != '"' || !v.string() {
			return false
		}
		v.space()
		if v.peek() != ':' {
			return false
		}
		v.i++
		v.space()
		if !v.value(depth + 1) {
			return false
		}
		v.space()
		switch v.peek() {
		case ',':
			v.i++
			v.space()
		case '}':
			v.i++
			return true
		default:
			return false
		}
	}
}

func (v *validator) array(depth int) bool {
	if depth >= maxNestingDepth {
		return false
	}
	v.i++ // [
	v.space()
	if v.peek() == ']' {
		v.i++
		return true
	}
	for {
		if !v.value(depth + 1) {
			return false
		}
		v.space()
		switch v.peek() {
		case ',':
			v.i++
			v.space()
		case ']':
			v.i++
			return true
		default:
			return false
		}
	}
}

// string reads a string: no control characters, only JSON's escapes.
func (v *validator) string() bool {
	data, i := v.data, v.i+1 // after the opening quote; locals stay in registers
	for i < len(data) {
		c := data[i]
		i++
		if c >= 0x20 && c != '"' && c != '\\' {
			continue // the common case first
		}
		switch {
		case c == '"':
			v.i = i
			return true
		case c < 0x20:
			return false
		}
		// A backslash.
		if i >= len(data) {
			return false
		}
		e := data[i]
		i++
		switch e {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		case 'u':
			if i+4 > len(data) {
				return false
			}
			for _, h := range data[i : i+4] {
				if !isHex(h) {
					return false
				}
			}
			i += 4
		default:
			return false
		}
	}
	return false // unterminated
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func (v *validator) literal(word string) bool {
	if len(v.data)-v.i < len(word) || string(v.data[v.i:v.i+len(word)]) != word {
		return false
	}
	v.i += len(word)
	return true
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (v *validator) number() bool {
	if v.peek() == '-' {
		v.i++
	}
	switch c := v.peek(); {
	case c == '0':
		v.i++
	case c >= '1' && c <= '9':
		v.digits()
	default:
		return false
	}
	if v.peek() == '.' {
		v.i++
		if !v.digits() {
			return false
		}
	}
	if c := v.peek(); c == 'e' || c == 'E' {
		v.i++
		if c := v.peek(); c == '+' || c == '-' {
			v.i++
		}
		if !v.digits() {
			return false
		}
	}
	return true
}

// digits reads one or more digits and reports whether there was one.
func (v *validator) digits() bool {
	start := v.i
	for v.i < len(v.data) && v.data[v.i] >= '0' && v.data[v.i] <= '9' {
		v.i++
	}
	return v.i > start
}

// simpleURIReference reports whether s is a URI-reference of a form
// url.Parse always accepts, so that Validate need not parse it: an absolute
// path ("/shop/orders") or "scheme://host" with an optional path
// ("ficus-cdc://shop/ficus_cdc"), scheme lowercase letters, digits and "-",
// host letters, digits and "-._~" (no port, no user), path letters, digits
// and "-._~/:". Anything else (escapes, queries, fragments, ports) is left
// to url.Parse.
func simpleURIReference(s string) bool {
	rest := s
	if !strings.HasPrefix(s, "/") {
		scheme, after, ok := strings.Cut(s, "://")
		if !ok || scheme == "" || scheme[0] < 'a' || scheme[0] > 'z' {
			return false
		}
		for _, c := range []byte(scheme) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
		host, path, _ := strings.Cut(after, "/")
		if host == "" {
			return false
		}
		for _, c := range []byte(host) {
			if !unreserved(c) {
				return false
			}
		}
		rest = path
	} else if strings.HasPrefix(s, "//") {
		return false // an authority without a scheme
	}
	for _, c := range []byte(rest) {
		if !unreserved(c) && c != '/' && c != ':' {
			return false
		}
	}
	return true
}

// unreserved reports whether c is an RFC 3986 unreserved character.
func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// simpleMediaType reports whether s is "type/subtype" of token characters
// without parameters or spaces ("application/json"), which
// mime.ParseMediaType always accepts.
func simpleMediaType(s string) bool {
	typ, sub, ok := strings.Cut(s, "/")
	return ok && isToken(typ) && isToken(sub)
}

// isToken reports whether s is a non-empty RFC 2045 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}
