package proxy

// The RateLimit and RateLimit-Policy header fields: writing them for a
// request's decisions, and parsing them (for clients and tests).

import (
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"
)

// WriteHeaders sets the RateLimit-Policy and RateLimit fields of the IETF
// RateLimit header fields draft (draft-ietf-httpapi-ratelimit-headers) for
// the decisions of the policies that applied to a request, one list member
// per policy in the order given; dry-run policies are left out, since they
// do not limit the client. For a token bucket:
//
//	RateLimit-Policy: "NAME";q=BURST;w=WINDOW
//	RateLimit: "NAME";r=REMAINING;t=RESET
//
// where WINDOW = ceil(Burst/Rate) seconds, the time an empty bucket needs
// to fill up (so the policy grants BURST requests per WINDOW), REMAINING
// is the whole tokens left and RESET the seconds, rounded up, until the
// bucket is full again. When a decision rejected the request it also sets
// Retry-After to the seconds, rounded up (at least 1), until the bucket of
// the most restrictive rejecting policy holds a token. Decisions with a
// nil Policy are skipped; no decision left means no header is set.
func WriteHeaders(h http.Header, ds []Decision) {
	// Both fields are written into one buffer (on the stack when small),
	// which becomes one string, and both values share one slice: a
	// request's headers cost two allocations whatever the policies.
	var buf [256]byte
	b := buf[:0]
	var retry time.Duration
	rejected, n := false, 0
	for _, d := range ds {
		p := d.Policy
		if p == nil || p.DryRun {
			continue
		}
		if !d.Allowed {
			rejected = true
			retry = max(retry, d.RetryAfter)
		}
		if n > 0 {
			b = append(b, ", "...)
		}
		n++
		window := int64(sfMaxInteger)
		if w := math.Ceil(float64(p.Burst) / p.Rate); w >= 0 && w < sfMaxInteger {
			window = int64(w)
		}
		b = appendRateLimitPolicyItem(b, RateLimitPolicyItem{Name: p.Name, Quota: int64(p.Burst), WindowSeconds: window})
	}
	if n == 0 {
		return
	}
	split, n := len(b), 0
	for _, d := range ds {
		p := d.Policy
		if p == nil || p.DryRun {
			continue
		}
		if n > 0 {
			b = append(b, ", "...)
		}
		n++
		b = appendRateLimitItem(b, RateLimitItem{Name: p.Name, Remaining: int64(d.Remaining), ResetSeconds: ceilSecondsOf(d.Reset)})
	}
	all := string(b)
	vals := []string{all[:split], all[split:]}
	h[canonicalRateLimitPolicy] = vals[0:1:1]
	h[canonicalRateLimit] = vals[1:2:2]
	if rejected {
		h.Set(headerRetryAfter, strconv.FormatInt(max(1, ceilSecondsOf(retry)), 10))
	}
}

// The RateLimit header names as http.Header keys them
// (http.CanonicalHeaderKey), so that WriteHeaders need not canonicalize.
const (
	canonicalRateLimit       = "Ratelimit"
	canonicalRateLimitPolicy = "Ratelimit-Policy"
)

// ceilSecondsOf rounds d up to whole seconds (0 stays 0).
func ceilSecondsOf(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// RateLimitItem is one member of a RateLimit field: the current state of
// one policy's quota.
type RateLimitItem struct {
	// Name is the policy's name.
	Name string
	// Remaining is the quota left (the r parameter).
	Remaining int64
	// ResetSeconds is the seconds until the quota is restored (the t
	// parameter); 0 when the member has none.
	ResetSeconds int64
}

// RateLimitPolicyItem is one member of a RateLimit-Policy field: a quota
// policy.
type RateLimitPolicyItem struct {
	// Name is the policy's name.
	Name string
	// Quota is how many requests the policy grants per window (the q
	// parameter).
	Quota int64
	// WindowSeconds is the window in seconds (the w parameter); 0 when the
	// member has none.
	WindowSeconds int64
}

// ParseRateLimit parses a RateLimit field value as WriteHeaders writes it:
// a structured-field List whose members are a policy name (String or
// Token) with Integer parameters r (required) and t (optional), both
// non-negative. Other parameters are parsed and ignored. An empty value
// is an empty list.
func ParseRateLimit(v string) ([]RateLimitItem, error) {
	members, err := parseSFList(v)
	if err != nil {
		return nil, fmt.Errorf("parse RateLimit field: %w", err)
	}
	var out []RateLimitItem
	for _, m := range members {
		it := RateLimitItem{Name: m.name}
		if it.Remaining, err = m.count("r", true); err == nil {
			it.ResetSeconds, err = m.count("t", false)
		}
		if err != nil {
			return nil, fmt.Errorf("parse RateLimit field: policy %q: %w", m.name, err)
		}
		out = append(out, it)
	}
	return out, nil
}

// ParseRateLimitPolicy parses a RateLimit-Policy field value as
// WriteHeaders writes it: a structured-field List whose members are a
// policy name (String or Token) with Integer parameters q (required) and w
// (optional), both non-negative. Other parameters are parsed and ignored.
// An empty value is an empty list.
func ParseRateLimitPolicy(v string) ([]RateLimitPolicyItem, error) {
	members, err := parseSFList(v)
	if err != nil {
		return nil, fmt.Errorf("parse RateLimit-Policy field: %w", err)
	}
	var out []RateLimitPolicyItem
	for _, m := range members {
		it := RateLimitPolicyItem{Name: m.name}
		if it.Quota, err = m.count("q", true); err == nil {
			it.WindowSeconds, err = m.count("w", false)
		}
		if err != nil {
			return nil, fmt.Errorf("parse RateLimit-Policy field: policy %q: %w", m.name, err)
		}
		out = append(out, it)
	}
	return out, nil
}

func appendRateLimitItem(b []byte, it RateLimitItem) []byte {
	b = appendSFString(b, it.Name)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, sfClamp(it.Remaining), 10)
	b = append(b, ";t="...)
	return strconv.AppendInt(b, sfClamp(it.ResetSeconds), 10)
}

func appendRateLimitPolicyItem(b []byte, it RateLimitPolicyItem) []byte {
	b = appendSFString(b, it.Name)
	b = append(b, ";q="...)
	b = strconv.AppendInt(b, sfClamp(it.Quota), 10)
	b = append(b, ";w="...)
	return strconv.AppendInt(b, sfClamp(it.WindowSeconds), 10)
}

// sfClamp keeps n within the non-negative Integers a structured field can
// carry.
func sfClamp(n int64) int64 {
	return min(max(n, 0), sfMaxInteger)
}

// appendSFString appends s as a structured-field String. A String carries
// printable ASCII only; any other byte is written as '?'.
func appendSFString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c > 0x7e:
			b = append(b, '?')
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// sfMember is one member of a structured-field List as the RateLimit
// fields use it: a name (String or Token) and its parameters.
type sfMember struct {
	name   string
	params []sfParam
}

// sfParam is one parameter; only Integer values are kept.
type sfParam struct {
	key     string
	integer bool
	n       int64
}

// count returns the value of parameter key, which must be a non-negative
// Integer; the last occurrence counts, as structured fields specify. An
// absent optional parameter is 0.
func (m sfMember) count(key string, required bool) (int64, error) {
	for i := len(m.params) - 1; i >= 0; i-- {
		p := m.params[i]
		if p.key != key {
			continue
		}
		if !p.integer || p.n < 0 {
			return 0, fmt.Errorf("parameter %s must be a non-negative integer", key)
		}
		return p.n, nil
	}
	if required {
		return 0, fmt.Errorf("parameter %s is missing", key)
	}
	return 0, nil
}

// sfParser parses the subset of RFC 9651 structured fields the RateLimit
// fields need: a List of Items with Parameters. Inner Lists are refused;
// parameter values may be of any bare item type.
type sfParser struct {
	s string
	i int
}

func (p *sfParser) errorf(format string, args ...any) error {
	return fmt.Errorf("at offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *sfParser) eof() bool { return p.i >= len(p.s) }

func (p *sfParser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.s[p.i]
}

func (p *sfParser) skipSP() {
	for !p.eof() && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *sfParser) skipOWS() {
	for !p.eof() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// parseSFList parses v as a List of policy members.
func parseSFList(v string) ([]sfMember, error) {
	p := &sfParser{s: v}
	p.skipSP()
	var out []sfMember
	for !p.eof() {
		m, err := p.member()
		if err != nil {
			return nil, err
		}
		out = append(out, m)
		p.skipOWS()
		if p.eof() {
			return out, nil
		}
		if p.s[p.i] != ',' {
			return nil, p.errorf("expected ',' between list members, found %q", p.s[p.i])
		}
		p.i++
		p.skipOWS()
		if p.eof() {
			return nil, p.errorf("trailing ',' after the last list member")
		}
	}
	return out, nil
}

// member parses a policy name and its parameters.
func (p *sfParser) member() (sfMember, error) {
	var m sfMember
	switch c := p.peek(); {
	case c == '"':
		s, err := p.str()
		if err != nil {
			return m, err
		}
		m.name = s
	case sfAlpha(c) || c == '*':
		m.name = p.token()
	case c == '(':
		return m, p.errorf("inner lists are not allowed here")
	default:
		return m, p.errorf("a policy name must be a string or a token, found %q", c)
	}
	for p.peek() == ';' {
		p.i++
		p.skipSP()
		key, err := p.key()
		if err != nil {
			return m, err
		}
		param := sfParam{key: key}
		if p.peek() == '=' {
			p.i++
			param.integer, param.n, err = p.bareItem()
			if err != nil {
				return m, fmt.Errorf("parameter %s: %w", key, err)
			}
		}
		m.params = append(m.params, param)
	}
	return m, nil
}

// key parses a parameter key.
func (p *sfParser) key() (string, error) {
	start := p.i
	if c := p.peek(); !(c >= 'a' && c <= 'z' || c == '*') {
		return "", p.errorf("a parameter key must start with a lowercase letter or '*', found %q", c)
	}
	for !p.eof() {
		c := p.s[p.i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '*') {
			break
		}
		p.i++
	}
	return p.s[start:p.i], nil
}

// bareItem parses any bare item; it returns the value when it is an
// Integer.
func (p *sfParser) bareItem() (integer bool, n int64, err error) {
	switch c := p.peek(); {
	case c == '-' || sfDigit(c):
		return p.number()
	case c == '"':
		_, err = p.str()
	case sfAlpha(c) || c == '*':
		p.token()
	case c == ':':
		err = p.byteSequence()
	case c == '?':
		p.i++
		if c := p.peek(); c != '0' && c != '1' {
			return false, 0, p.errorf("a boolean must be ?0 or ?1")
		}
		p.i++
	case c == '%':
		err = p.displayString()
	case c == '@':
		p.i++
		var isInt bool
		if isInt, _, err = p.number(); err == nil && !isInt {
			err = p.errorf("a date must be an integer")
		}
	default:
		err = p.errorf("unsupported or invalid value starting with %q", c)
	}
	return false, 0, err
}

// number parses an Integer or a Decimal.
func (p *sfParser) number() (integer bool, n int64, err error) {
	neg := false
	if p.peek() == '-' {
		neg = true
		p.i++
	}
	if !sfDigit(p.peek()) {
		return false, 0, p.errorf("expected a digit")
	}
	start := p.i
	dot := -1
	for !p.eof() {
		c := p.s[p.i]
		if sfDigit(c) {
			p.i++
		} else if c == '.' && dot < 0 {
			if p.i-start > 12 {
				return false, 0, p.errorf("a decimal has at most 12 integer digits")
			}
			dot = p.i
			p.i++
		} else {
			break
		}
		if dot < 0 && p.i-start > 15 {
			return false, 0, p.errorf("an integer has at most 15 digits")
		}
		if dot >= 0 && p.i-start > 16 {
			return false, 0, p.errorf("a decimal has at most 16 characters")
		}
	}
	if dot >= 0 {
		if frac := p.i - dot - 1; frac < 1 || frac > 3 {
			return false, 0, p.errorf("a decimal has 1 to 3 fractional digits")
		}
		return false, 0, nil
	}
	n, err = strconv.ParseInt(p.s[start:p.i], 10, 64)
	if err != nil {
		return false, 0, p.errorf("integer: %v", err)
	}
	if neg {
		n = -n
	}
	return true, n, nil
}

// str parses a String.
func (p *sfParser) str() (string, error) {
	p.i++ // the opening quote
	var b []byte
	start := p.i
	for !p.eof() {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '\\':
			if p.eof() || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
				return "", p.errorf(`a string may only escape '"' and '\'`)
			}
			if b == nil {
				b = []byte(p.s[start : p.i-1])
			}
			b = append(b, p.s[p.i])
			p.i++
		case c == '"':
			if b == nil {
				return p.s[start : p.i-1], nil
			}
			return string(b), nil
		case c < 0x20 || c > 0x7e:
			return "", p.errorf("a string holds printable ASCII only, found %q", c)
		default:
			if b != nil {
				b = append(b, c)
			}
		}
	}
	return "", p.errorf("unterminated string")
}

// token parses a Token; the caller checked its first character.
func (p *sfParser) token() string {
	start := p.i
	p.i++
	for !p.eof() && (sfTchar(p.s[p.i]) || p.s[p.i] == ':' || p.s[p.i] == '/') {
		p.i++
	}
	return p.s[start:p.i]
}

// byteSequence parses a Byte Sequence.
func (p *sfParser) byteSequence() error {
	p.i++ // the opening colon
	start := p.i
	for !p.eof() && p.s[p.i] != ':' {
		c := p.s[p.i]
		if !(sfAlpha(c) || sfDigit(c) || c == '+' || c == '/' || c == '=') {
			return p.errorf("a byte sequence holds base64 only, found %q", c)
		}
		p.i++
	}
	if p.eof() {
		return p.errorf("unterminated byte sequence")
	}
	enc := base64.StdEncoding
	if (p.i-start)%4 != 0 {
		enc = base64.RawStdEncoding // padding may be left out
	}
	if _, err := enc.DecodeString(p.s[start:p.i]); err != nil {
		return p.errorf("invalid base64 in byte sequence")
	}
	p.i++
	return nil
}

// displayString parses a Display String.
func (p *sfParser) displayString() error {
	p.i++ // the percent sign
	if p.peek() != '"' {
		return p.errorf(`a display string starts with %%"`)
	}
	p.i++
	var b []byte
	for !p.eof() {
		c := p.s[p.i]
		p.i++
		switch {
		case c < 0x20 || c > 0x7e:
			return p.errorf("a display string holds printable ASCII only, found %q", c)
		case c == '%':
			if p.i+2 > len(p.s) || !sfLowerHex(p.s[p.i]) || !sfLowerHex(p.s[p.i+1]) {
				return p.errorf("a display string escapes a byte as %% and two lowercase hex digits")
			}
			n, _ := strconv.ParseUint(p.s[p.i:p.i+2], 16, 8)
			b = append(b, byte(n))
			p.i += 2
		case c == '"':
			if !utf8.Valid(b) {
				return p.errorf("a display string must be UTF-8")
			}
			return nil
		default:
			b = append(b, c)
		}
	}
	return p.errorf("unterminated display string")
}

func sfLowerHex(c byte) bool { return sfDigit(c) || c >= 'a' && c <= 'f' }

func sfDigit(c byte) bool { return c >= '0' && c <= '9' }

func sfAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// sfTchar reports whether c is an RFC 9110 tchar.
func sfTchar(c byte) bool {
	if sfAlpha(c) || sfDigit(c) {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
