package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrNotJSON is returned by DiffJSON when an input is not one valid JSON
// value.
var ErrNotJSON = errors.New("not a JSON document")

// Kinds of Difference.
const (
	// DiffChanged: both sides hold a value of the same JSON type at Path,
	// but the values differ.
	DiffChanged = "changed"
	// DiffMissingLeft: only the right side has a value at Path.
	DiffMissingLeft = "missing_left"
	// DiffMissingRight: only the left side has a value at Path.
	DiffMissingRight = "missing_right"
	// DiffType: the sides hold values of different JSON types at Path
	// (number and string, object and array, null and anything else).
	DiffType = "type"
	// DiffBody: the bodies are not both JSON and their bytes differ; Path
	// is BodyPath.
	DiffBody = "body"
)

// Paths that name something other than a JSON member.
const (
	// RootPath is the Path of a difference in the top-level JSON value
	// itself (for instance an object on one side and an array on the other).
	RootPath = "(root)"
	// BodyPath is the Path of a DiffBody difference.
	BodyPath = "(body)"
	// StatusPath is the Path of a difference in the HTTP status code.
	StatusPath = "(status)"
)

// diffValueMax is how many bytes of a value a Difference keeps.
const diffValueMax = 200

// Difference is one place where two JSON documents differ.
type Difference struct {
	// Path is the dotted path of the value: object keys and array indexes
	// joined by ".", such as "items.0.price", or one of RootPath, BodyPath
	// and StatusPath. Keys are written as they are, so a key that contains
	// a dot reads like two levels.
	Path string `json:"path"`
	// Left and Right are the compact JSON of the value on each side,
	// cut to at most 200 bytes (a cut value ends with "..."); empty when
	// that side has no value at Path.
	Left  string `json:"left,omitempty"`
	Right string `json:"right,omitempty"`
	// Kind is DiffChanged, DiffMissingLeft, DiffMissingRight, DiffType or
	// DiffBody.
	Kind string `json:"kind"`
}

// DiffJSON compares two JSON documents and returns where they differ, in
// path order: object keys in byte order, array elements by index. Object
// key order and insignificant whitespace do not matter; arrays are
// compared by position; numbers are compared by exact decimal value, so 1,
// 1.0 and 10e-1 are equal and large integers never lose precision.
//
// ignore holds dotted path patterns whose values are not compared; a "*"
// segment matches any one key or index ("items.*.id"), and a pattern also
// ignores everything below the value it names. At most maxDiffs
// differences are returned (all when maxDiffs <= 0); the first maxDiffs
// in path order are kept.
//
// An input that is not exactly one valid JSON value gives an error
// wrapping ErrNotJSON.
func DiffJSON(a, b []byte, ignore []string, maxDiffs int) ([]Difference, error) {
	left, err := decodeJSON(a)
	if err != nil {
		return nil, fmt.Errorf("diff json: left side: %w", err)
	}
	right, err := decodeJSON(b)
	if err != nil {
		return nil, fmt.Errorf("diff json: right side: %w", err)
	}
	d := differ{patterns: compilePatterns(ignore), max: maxDiffs}
	d.diff(left, right)
	return d.out, nil
}

// decodeJSON parses exactly one JSON value, keeping numbers as written.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the first value", ErrNotJSON)
	}
	return v, nil
}

// ValidIgnorePattern reports what is wrong with an ignore pattern for
// DiffJSON, or nil: a pattern is one or more non-empty segments joined by
// ".".
func ValidIgnorePattern(p string) error {
	if p == "" {
		return errors.New("ignore pattern is empty; write a dotted path such as items.*.id")
	}
	if slices.Contains(strings.Split(p, "."), "") {
		return fmt.Errorf("ignore pattern %q has an empty segment; write a dotted path such as items.*.id", p)
	}
	return nil
}

// segment is one step of a path: an object key or an array index.
type segment struct {
	key   string
	index int // -1 for a key
}

// patternSegment is one step of an ignore pattern.
type patternSegment struct {
	wild  bool
	key   string
	index int // the array index the key spells, or -1
}

func (p patternSegment) matches(s segment) bool {
	switch {
	case p.wild:
		return true
	case s.index >= 0:
		return p.index == s.index
	default:
		return p.key == s.key
	}
}

// compilePatterns groups the patterns by their number of segments. Empty
// patterns and segments are kept as literal keys, matching only empty keys.
func compilePatterns(ignore []string) map[int][][]patternSegment {
	if len(ignore) == 0 {
		return nil
	}
	byLen := make(map[int][][]patternSegment)
	for _, p := range ignore {
		parts := strings.Split(p, ".")
		segs := make([]patternSegment, len(parts))
		for i, part := range parts {
			segs[i] = patternSegment{wild: part == "*", key: part, index: -1}
			if n, err := strconv.Atoi(part); err == nil && n >= 0 && strconv.Itoa(n) == part {
				segs[i].index = n
			}
		}
		byLen[len(segs)] = append(byLen[len(segs)], segs)
	}
	return byLen
}

// differ walks two decoded documents side by side.
type differ struct {
	patterns map[int][][]patternSegment
	max      int
	path     []segment
	out      []Difference
}

func (d *differ) full() bool { return d.max > 0 && len(d.out) >= d.max }

// ignored reports whether a pattern names the current path. Shorter
// patterns were checked on the way down, so only those as long as the path
// need checking.
func (d *differ) ignored() bool {
	for _, p := range d.patterns[len(d.path)] {
		match := true
		for i, ps := range p {
			if !ps.matches(d.path[i]) {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

func (d *differ) report(kind string, left, right any, hasLeft, hasRight bool) {
	diff := Difference{Path: d.pathString(), Kind: kind}
	if hasLeft {
		diff.Left = compactJSON(left)
	}
	if hasRight {
		diff.Right = compactJSON(right)
	}
	d.out = append(d.out, diff)
}

func (d *differ) pathString() string {
	if len(d.path) == 0 {
		return RootPath
	}
	var b strings.Builder
	for i, s := range d.path {
		if i > 0 {
			b.WriteByte('.')
		}
		if s.index >= 0 {
			b.WriteString(strconv.Itoa(s.index))
		} else {
			b.WriteString(s.key)
		}
	}
	return b.String()
}

// diffScalar compares av, the string or bool that a holds, with b.
func diffScalar[T comparable](d *differ, av T, a, b any) {
	bv, ok := b.(T)
	if !ok {
		d.report(DiffType, a, b, true, true)
		return
	}
	if av != bv {
		d.report(DiffChanged, a, b, true, true)
	}
}

// diff compares the values at the current path, both present.
func (d *differ) diff(a, b any) {
	if d.full() {
		return
	}
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			d.report(DiffType, a, b, true, true)
			return
		}
		d.diffObjects(av, bv)
	case []any:
		bv, ok := b.([]any)
		if !ok {
			d.report(DiffType, a, b, true, true)
			return
		}
		d.diffArrays(av, bv)
	case json.Number:
		bv, ok := b.(json.Number)
		if !ok {
			d.report(DiffType, a, b, true, true)
			return
		}
		if !numbersEqual(string(av), string(bv)) {
			d.report(DiffChanged, a, b, true, true)
		}
	case string:
		diffScalar(d, av, a, b)
	case bool:
		diffScalar(d, av, a, b)
	default: // null
		if b != nil {
			d.report(DiffType, a, b, true, true)
		}
	}
}

func (d *differ) diffObjects(a, b map[string]any) {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if d.full() {
			return
		}
		d.path = append(d.path, segment{key: k, index: -1})
		if !d.ignored() {
			av, inA := a[k]
			bv, inB := b[k]
			switch {
			case !inA:
				d.report(DiffMissingLeft, nil, bv, false, true)
			case !inB:
				d.report(DiffMissingRight, av, nil, true, false)
			default:
				d.diff(av, bv)
			}
		}
		d.path = d.path[:len(d.path)-1]
	}
}

func (d *differ) diffArrays(a, b []any) {
	for i := range max(len(a), len(b)) {
		if d.full() {
			return
		}
		d.path = append(d.path, segment{index: i})
		if !d.ignored() {
			switch {
			case i >= len(a):
				d.report(DiffMissingLeft, nil, b[i], false, true)
			case i >= len(b):
				d.report(DiffMissingRight, a[i], nil, true, false)
			default:
				d.diff(a[i], b[i])
			}
		}
		d.path = d.path[:len(d.path)-1]
	}
}

// numbersEqual compares two valid JSON number literals by exact value.
func numbersEqual(a, b string) bool {
	if a == b {
		return true
	}
	return parseDecimal(a).equal(parseDecimal(b))
}

// decimal is a JSON number in canonical form: ±digits × 10^exp, where
// digits has no leading or trailing zeros (empty for zero). Exponents too
// large for an int64 are kept in big.
type decimal struct {
	neg    bool
	digits string
	exp    int64
	big    *big.Int // set instead of exp when the exponent overflows int64
}

// parseDecimal reads a valid JSON number literal (as the json package
// produced it) without ever expanding its exponent, so "1e999999999" is as
// cheap as "1".
func parseDecimal(s string) decimal {
	var d decimal
	if strings.HasPrefix(s, "-") {
		d.neg = true
		s = s[1:]
	}
	mant, expStr, _ := strings.Cut(strings.ToLower(s), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	trimmed := strings.TrimRight(digits, "0")
	if trimmed == "" {
		return decimal{} // zero, and -0 == 0
	}
	d.digits = trimmed
	// value = digits × 10^(exp − len(frac)); dropping trailing zeros adds
	// one to the exponent each.
	shift := int64(len(digits)-len(trimmed)) - int64(len(frac))
	expStr = strings.TrimPrefix(expStr, "+")
	if expStr == "" {
		d.exp = shift
		return d
	}
	if e, err := strconv.ParseInt(expStr, 10, 64); err == nil && e < 1<<62 && e > -(1<<62) {
		d.exp = e + shift
		return d
	}
	d.big, _ = new(big.Int).SetString(expStr, 10)
	d.big.Add(d.big, big.NewInt(shift))
	return d
}

func (d decimal) equal(o decimal) bool {
	if d.digits != o.digits || d.neg != o.neg {
		return false
	}
	switch {
	case d.big == nil && o.big == nil:
		return d.exp == o.exp
	case d.big != nil && o.big != nil:
		return d.big.Cmp(o.big) == 0
	case d.big != nil:
		return d.big.IsInt64() && d.big.Int64() == o.exp
	default:
		return o.big.IsInt64() && o.big.Int64() == d.exp
	}
}

// compactJSON writes v as compact JSON, object keys sorted, cut to
// diffValueMax bytes.
func compactJSON(v any) string {
	w := limitedJSON{limit: diffValueMax + 1}
	w.value(v)
	return truncate(w.buf.String(), diffValueMax)
}

// truncate cuts s to at most n bytes on a UTF-8 boundary, marking the cut
// with "...".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// limitedJSON encodes a decoded JSON value and stops once limit bytes are
// written, so a large subtree costs no more than a small one.
type limitedJSON struct {
	buf   bytes.Buffer
	limit int
}

func (w *limitedJSON) done() bool { return w.buf.Len() >= w.limit }

func (w *limitedJSON) value(v any) {
	if w.done() {
		return
	}
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		w.buf.WriteByte('{')
		for i, k := range keys {
			if w.done() {
				return
			}
			if i > 0 {
				w.buf.WriteByte(',')
			}
			w.str(k)
			w.buf.WriteByte(':')
			w.value(v[k])
		}
		w.buf.WriteByte('}')
	case []any:
		w.buf.WriteByte('[')
		for i, e := range v {
			if w.done() {
				return
			}
			if i > 0 {
				w.buf.WriteByte(',')
			}
			w.value(e)
		}
		w.buf.WriteByte(']')
	case string:
		w.str(v)
	case json.Number:
		w.buf.WriteString(string(v))
	case bool:
		w.buf.WriteString(strconv.FormatBool(v))
	default:
		w.buf.WriteString("null")
	}
}

// str writes a JSON string, encoding at most what still fits.
func (w *limitedJSON) str(s string) {
	if room := w.limit - w.buf.Len(); len(s) > room {
		s = truncate(s, max(room, len("...")))
	}
	enc := json.NewEncoder(&w.buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	w.buf.Truncate(w.buf.Len() - 1)
}
