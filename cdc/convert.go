package cdc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// This file turns the text form of column values into the Go values of
// Change (see docs/cdc.md, "Values"): the stream's decoder and the
// snapshot reader both convert through it, so that a row reads the same
// either way.

// maxArrayDims is Postgres's MAXDIM.
const maxArrayDims = 6

// ErrTypeLookup means the decoder could not find out the base type of a
// column's type (Decoder.ResolveType failed): a domain's values would be
// encoded as text instead of as its base type's. It does not mean the
// message is malformed; decoding it again once the database answers
// succeeds.
var ErrTypeLookup = errors.New("cdc: type lookup failed")

// column is a column of a relation.
type column struct {
	name    string
	key     bool
	oid     uint32
	convert converter
	// text is true when the value is its Postgres text as a string
	// (convertText): the text values of a row share one allocation.
	text bool
}

// converter turns the text form of a value into its Go value (see Change).
type converter func(text []byte) (any, error)

// newColumn describes a column of type oid and the converter of its
// values.
func (d *Decoder) newColumn(name string, oid uint32, key bool) (column, error) {
	conv, text, err := d.columnConverter(oid)
	if err != nil {
		return column{}, fmt.Errorf("column %s: %w", name, err)
	}
	return column{name: name, key: key, oid: oid, convert: conv, text: text}, nil
}

// newRow starts a row of n columns.
func (d *Decoder) newRow(n int) map[string]any {
	d.text, d.texts = d.text[:0], d.texts[:0]
	return make(map[string]any, n)
}

// setText puts the value of column c, whose text form is text, into row.
// The caller must call endRow once it has set every value of row; text
// may be reused after setText returns.
func (d *Decoder) setText(row map[string]any, c *column, text []byte) error {
	if c.text {
		d.text = append(d.text, text...)
		d.texts = append(d.texts, textValue{name: c.name, end: len(d.text)})
		return nil
	}
	v, err := c.convert(text)
	if err != nil {
		return fmt.Errorf("column %s (type oid %d): %w", c.name, c.oid, err)
	}
	row[c.name] = v
	return nil
}

// endRow puts the text values of row into it: one string for all of
// them, each a substring.
func (d *Decoder) endRow(row map[string]any) {
	if len(d.texts) == 0 {
		return
	}
	all, start := string(d.text), 0
	for _, t := range d.texts {
		row[t.name] = all[start:t.end]
		start = t.end
	}
}

// textValue is a text value of a row being decoded: it ends at end in
// Decoder.text, where the previous one ends.
type textValue struct {
	name string
	end  int
}

// converter returns how to decode the text values of type oid. When the
// base type of a domain cannot be looked up, the converter fails with
// ErrTypeLookup.
func (d *Decoder) converter(oid uint32) converter {
	conv, _, err := d.columnConverter(oid)
	if err != nil {
		return func([]byte) (any, error) { return nil, err }
	}
	return conv
}

// maxTypeHops bounds how many types columnConverter follows from a type to
// its base type: ResolveType answers with the final base type, so one hop
// is the rule.
const maxTypeHops = 4

// columnConverter returns how to decode the text values of type oid, and
// whether that is convertText. A type pgx does not know (a domain, an
// array of domains, an enum, another custom type) is first resolved with
// ResolveType: a domain's values take the encoding of its base type, as a
// query's result does (PostgreSQL describes a domain column of a result
// by its base type); the rest are text.
func (d *Decoder) columnConverter(oid uint32) (converter, bool, error) {
	for range maxTypeHops {
		conv, text, ok := d.knownConverter(oid)
		if ok {
			return conv, text, nil
		}
		if d.ResolveType == nil {
			break
		}
		base, err := d.ResolveType(oid)
		if err != nil {
			return nil, false, fmt.Errorf("%w: base type of type oid %d: %w", ErrTypeLookup, oid, err)
		}
		if base == oid || base == 0 {
			break
		}
		oid = base
	}
	return convertText, true, nil // enums, other custom types
}

// knownConverter returns how to decode the text values of type oid, or
// false when pgx does not know the type.
func (d *Decoder) knownConverter(oid uint32) (converter, bool, bool) {
	switch oid {
	case pgtype.BoolOID:
		return convertBool, false, true
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID:
		return convertInt, false, true
	case pgtype.Float4OID:
		return convertFloat[float32], false, true
	case pgtype.Float8OID:
		return convertFloat[float64], false, true
	case pgtype.JSONOID, pgtype.JSONBOID:
		return convertJSON, false, true
	}
	typ, ok := d.types.TypeForOID(oid)
	if !ok {
		return nil, false, false
	}
	conv, text := d.pgxConverter(typ)
	return conv, text, true
}

// pgxConverter returns how to decode the text values of typ, a type pgx
// knows, and whether that is convertText.
func (d *Decoder) pgxConverter(typ *pgtype.Type) (converter, bool) {
	oid := typ.OID
	switch oid {
	case pgtype.ByteaOID:
		return d.pgx(typ, func(v any) (any, error) { return v, nil }), false
	case pgtype.TimestamptzOID:
		slow := d.pgx(typ, func(v any) (any, error) {
			if t, ok := v.(time.Time); ok && t.Year() >= 0 && t.Year() <= 9999 {
				return t.UTC(), nil
			}
			return nil, errUseText
		})
		return func(text []byte) (any, error) {
			if t, ok := parseTimestamptzUTC(text); ok {
				return t, nil
			}
			return slow(text)
		}, false
	case pgtype.TimestampOID:
		return d.pgx(typ, func(v any) (any, error) {
			if t, ok := v.(time.Time); ok && t.Year() >= 0 && t.Year() <= 9999 {
				return t.Format("2006-01-02T15:04:05.999999999"), nil
			}
			return nil, errUseText
		}), false
	}
	if a, ok := typ.Codec.(*pgtype.ArrayCodec); ok && a.ElementType != nil {
		if _, nested := a.ElementType.Codec.(*pgtype.ArrayCodec); !nested {
			delim := byte(',')
			if a.ElementType.OID == pgtype.BoxOID {
				delim = ';'
			}
			elem, _, _ := d.knownConverter(a.ElementType.OID)
			if elem == nil {
				elem = convertText
			}
			return func(text []byte) (any, error) { return parseArray(text, delim, elem) }, false
		}
	}
	// numeric (exact decimal text), uuid, date, text types and every type
	// without a JSON mapping.
	return convertText, true
}

// parseTimestamptzUTC reads the text Postgres writes for a timestamptz in
// the UTC session time zone, "2006-01-02 15:04:05.999999+00", as the pgx
// codec does, without its allocations; ok is false for every other form
// (other offsets, years outside 1-9999, BC, infinity), which the codec
// reads.
func parseTimestamptzUTC(text []byte) (t time.Time, ok bool) {
	n := len(text)
	if n < 22 || n > 29 || n == 23 || string(text[n-3:]) != "+00" ||
		text[4] != '-' || text[7] != '-' || text[10] != ' ' || text[13] != ':' || text[16] != ':' {
		return time.Time{}, false
	}
	num := func(b []byte) (int, bool) {
		v := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	year, ok1 := num(text[0:4])
	month, ok2 := num(text[5:7])
	day, ok3 := num(text[8:10])
	hour, ok4 := num(text[11:13])
	minute, ok5 := num(text[14:16])
	sec, ok6 := num(text[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, false
	}
	nsec := 0
	if frac := text[19 : n-3]; len(frac) > 0 {
		if frac[0] != '.' {
			return time.Time{}, false
		}
		v, ok := num(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for range 9 - (len(frac) - 1) {
			v *= 10
		}
		nsec = v
	}
	if year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	t = time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day {
		return time.Time{}, false // February 30th and the like
	}
	return t, true
}

// errUseText tells pgx converters to keep the Postgres text.
var errUseText = errors.New("use text")

// pgx decodes with the codec of typ and maps the result with fit, which
// returns errUseText to keep the text ("infinity", years JSON cannot
// write).
func (d *Decoder) pgx(typ *pgtype.Type, fit func(any) (any, error)) converter {
	return func(text []byte) (any, error) {
		v, err := typ.Codec.DecodeValue(d.types, typ.OID, pgtype.TextFormatCode, text)
		if err != nil {
			return nil, fmt.Errorf("not a valid %s: %q: %v", typ.Name, truncate(text), err)
		}
		v, err = fit(v)
		if errors.Is(err, errUseText) {
			return string(text), nil
		}
		return v, err
	}
}

func convertText(text []byte) (any, error) { return string(text), nil }

func convertBool(text []byte) (any, error) {
	switch string(text) {
	case "t":
		return true, nil
	case "f":
		return false, nil
	}
	return nil, fmt.Errorf("not a boolean: %q", truncate(text))
}

func convertInt(text []byte) (any, error) {
	n, err := strconv.ParseInt(string(text), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("not an integer: %q", truncate(text))
	}
	return n, nil
}

// specialFloat reports whether text is a float JSON cannot carry as a
// number.
func specialFloat(text []byte) bool {
	switch string(text) {
	case "NaN", "Infinity", "-Infinity":
		return true
	}
	return false
}

// convertFloat decodes a float4 (F float32) or float8 (F float64).
func convertFloat[F float32 | float64](text []byte) (any, error) {
	if specialFloat(text) {
		return string(text), nil
	}
	bits, name := 64, "float8"
	if _, ok := any(F(0)).(float32); ok {
		bits, name = 32, "float4"
	}
	f, err := strconv.ParseFloat(string(text), bits)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, fmt.Errorf("not a %s: %q", name, truncate(text))
	}
	return F(f), nil
}

func convertJSON(text []byte) (any, error) {
	if !json.Valid(text) {
		return nil, fmt.Errorf("not valid JSON: %q", truncate(text))
	}
	return json.RawMessage(bytes.Clone(text)), nil
}

// truncate shortens a value for an error message.
func truncate(text []byte) []byte {
	const limit = 40
	if len(text) > limit {
		return slices.Concat(text[:limit], []byte("..."))
	}
	return text
}

// parseArray reads the text form of an array ("{1,2,NULL}",
// `{{"a b","c\"d"},{e,f}}`, "[0:1]={1,2}") into nested []any, converting
// each element with elem.
func parseArray(text []byte, delim byte, elem converter) (any, error) {
	p := arrayParser{s: text, delim: delim, elem: elem}
	if len(p.s) > 0 && p.s[0] == '[' {
		// Dimension decoration for lower bounds other than 1.
		eq := bytes.IndexByte(p.s, '=')
		if eq < 0 {
			return nil, fmt.Errorf("array %q: dimensions without '='", truncate(text))
		}
		p.i = eq + 1
	}
	v, err := p.array(1)
	if err == nil && p.i != len(p.s) {
		err = errors.New("trailing characters")
	}
	if err != nil {
		return nil, fmt.Errorf("array %q: %w", truncate(text), err)
	}
	return v, nil
}

type arrayParser struct {
	s     []byte
	i     int
	delim byte
	elem  converter
	buf   []byte
}

func (p *arrayParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *arrayParser) array(depth int) ([]any, error) {
	if depth > maxArrayDims {
		return nil, fmt.Errorf("more than %d dimensions", maxArrayDims)
	}
	if p.peek() != '{' {
		return nil, fmt.Errorf("'{' expected at offset %d", p.i)
	}
	p.i++
	out := []any{}
	if p.peek() == '}' {
		p.i++
		return out, nil
	}
	for {
		var (
			v   any
			err error
		)
		switch p.peek() {
		case '{':
			v, err = p.array(depth + 1)
		case '"':
			v, err = p.quoted()
		default:
			v, err = p.unquoted()
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		switch c := p.peek(); {
		case c == p.delim:
			p.i++
		case c == '}':
			p.i++
			return out, nil
		default:
			return nil, fmt.Errorf("delimiter or '}' expected at offset %d", p.i)
		}
	}
}

func (p *arrayParser) quoted() (any, error) {
	p.i++ // opening quote
	p.buf = p.buf[:0]
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch c {
		case '"':
			return p.elem(p.buf)
		case '\\':
			if p.i == len(p.s) {
				return nil, errors.New("backslash at the end")
			}
			c = p.s[p.i]
			p.i++
		}
		p.buf = append(p.buf, c)
	}
	return nil, errors.New("unterminated quoted element")
}

func (p *arrayParser) unquoted() (any, error) {
	p.buf = p.buf[:0]
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == p.delim || c == '}' {
			break
		}
		switch c {
		case '{', '"':
			return nil, fmt.Errorf("unexpected %q at offset %d", c, p.i)
		case '\\':
			p.i++
			if p.i == len(p.s) {
				return nil, errors.New("backslash at the end")
			}
			c = p.s[p.i]
		}
		p.buf = append(p.buf, c)
		p.i++
	}
	if len(p.buf) == 0 {
		return nil, fmt.Errorf("empty element at offset %d", p.i)
	}
	if len(p.buf) == 4 && bytes.EqualFold(p.buf, []byte("NULL")) {
		return nil, nil
	}
	return p.elem(p.buf)
}
