// Package cloudevent reads and writes CloudEvents 1.0 in structured JSON mode,
// the wire format of every ficus event: the CDC reader and the outbox relay
// produce them, sinks carry them, and consumers such as the simulated CRM
// parse them.
//
// An [Event] holds the required context attributes (specversion, id, source,
// type), the optional ones (subject, time, datacontenttype, dataschema),
// extension attributes and the data. [Parse] reads one event
// ([ContentType]); [ParseBatch] reads the JSON array of the batch format
// ([BatchContentType]). Both return only events that pass
// [Event.Validate]. [Event.MarshalJSON] writes extensions as top-level
// attributes, as the JSON format requires, so json.Marshal of an Event or a
// []Event produces a single event or a batch body; [Event.AppendJSON]
// writes the same bytes into a buffer of the caller's, for writing many
// events without an allocation each.
//
// Data holds the JSON value of the "data" member as it appears on the wire:
// an object, array, number or literal for JSON content types (no
// datacontenttype, application/json or any +json type), a JSON string for
// text types. Binary data travels base64-encoded in "data_base64" and is
// held decoded in DataBase64; an event carries at most one of the two.
package cloudevent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"mime"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors returned by Parse, ParseBatch and Validate. They are wrapped with
// the attribute or batch position concerned; test for them with errors.Is.
var (
	// ErrMalformed means the input is not the JSON expected: not JSON at
	// all, not an object for an event, or not an array for a batch.
	ErrMalformed = errors.New("cloudevent: malformed JSON")
	// ErrMissingSpecVersion means the specversion attribute is absent.
	ErrMissingSpecVersion = errors.New(`cloudevent: missing required attribute specversion (set it to "1.0")`)
	// ErrUnsupportedSpecVersion means specversion is not "1.0".
	ErrUnsupportedSpecVersion = errors.New(`cloudevent: unsupported specversion (only "1.0" is supported)`)
	// ErrMissingID means the id attribute is absent or empty.
	ErrMissingID = errors.New("cloudevent: missing required attribute id (a non-empty string, unique per source)")
	// ErrMissingSource means the source attribute is absent or empty.
	ErrMissingSource = errors.New("cloudevent: missing required attribute source (a non-empty URI-reference)")
	// ErrMissingType means the type attribute is absent or empty.
	ErrMissingType = errors.New("cloudevent: missing required attribute type (a non-empty string)")
	// ErrInvalidAttribute means a context attribute has the wrong JSON type
	// or a value its definition does not allow.
	ErrInvalidAttribute = errors.New("cloudevent: invalid attribute")
	// ErrInvalidExtensionName means an extension attribute name is not 1 to
	// 20 characters of lowercase a-z and 0-9, or is a reserved name.
	ErrInvalidExtensionName = errors.New("cloudevent: invalid extension attribute name (use 1 to 20 characters a-z, 0-9, not a reserved name)")
	// ErrInvalidExtensionValue means an extension value is not a string, a
	// boolean or an integer in the 32-bit signed range.
	ErrInvalidExtensionValue = errors.New("cloudevent: invalid extension attribute value (use a string, a boolean or a 32-bit integer)")
	// ErrInvalidData means Data is not a single valid JSON value.
	ErrInvalidData = errors.New("cloudevent: data is not a valid JSON value")
	// ErrDataConflict means both data and data_base64 are present.
	ErrDataConflict = errors.New("cloudevent: both data and data_base64 are present (send at most one)")
)

const (
	// SpecVersion is the only CloudEvents version this package reads and writes.
	SpecVersion = "1.0"
	// ContentType is the media type of one event in structured JSON mode.
	ContentType = "application/cloudevents+json"
	// BatchContentType is the media type of a JSON array of events.
	BatchContentType = "application/cloudevents-batch+json"
	// MaxExtensionNameLen is the longest extension attribute name accepted.
	MaxExtensionNameLen = 20
)

// Event is one CloudEvent. The zero value is not valid: SpecVersion, ID,
// Source and Type are required.
type Event struct {
	// SpecVersion must be "1.0" (SpecVersion).
	SpecVersion string
	// ID identifies the event; Source plus ID is unique per distinct event
	// and stays the same when the event is delivered again.
	ID string
	// Source is a URI-reference naming the context the event happened in.
	Source string
	// Type names the kind of occurrence, e.g. "dev.ficus.cdc.row.v1".
	Type string
	// Subject is the subject of the event within Source. Optional.
	Subject string
	// Time is when the occurrence happened; the zero time means absent.
	Time time.Time
	// DataContentType is the RFC 2046 media type of Data. Optional; absent
	// means application/json.
	DataContentType string
	// DataSchema is an absolute URI of the schema Data adheres to. Optional.
	DataSchema string
	// Extensions are extension attributes by name, written as top-level
	// attributes. Values are string, bool or an integer within the 32-bit
	// signed range (Parse yields int32 for numbers).
	Extensions map[string]any
	// Data is the JSON value of the "data" member; nil means absent.
	Data json.RawMessage
	// DataBase64 is binary data, carried base64-encoded in "data_base64";
	// nil means absent.
	DataBase64 []byte
}

// Names of the context attributes and of the data members, all of which an
// extension may not use.
const (
	attrSpecVersion     = "specversion"
	attrID              = "id"
	attrSource          = "source"
	attrType            = "type"
	attrSubject         = "subject"
	attrTime            = "time"
	attrDataContentType = "datacontenttype"
	attrDataSchema      = "dataschema"
	memberData          = "data"
	memberDataBase64    = "data_base64"
)

var reservedNames = []string{
	attrSpecVersion, attrID, attrSource, attrType, attrSubject, attrTime,
	attrDataContentType, attrDataSchema, memberData, memberDataBase64,
}

// Parse reads one event in structured JSON mode and validates it.
func Parse(b []byte) (Event, error) {
	var e Event
	if err := e.decode(b); err != nil {
		return Event{}, err
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// ParseBatch reads a batch, a JSON array of events in structured JSON mode,
// and validates every event. An empty array is a valid empty batch.
func ParseBatch(b []byte) ([]Event, error) {
	if first(b) != '[' {
		return nil, fmt.Errorf("%w: a batch must be a JSON array of events", ErrMalformed)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(b, &raws); err != nil {
		return nil, fmt.Errorf("%w: batch: %v", ErrMalformed, err)
	}
	events := make([]Event, 0, len(raws))
	for i, raw := range raws {
		e, err := Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("batch event %d: %w", i, err)
		}
		events = append(events, e)
	}
	return events, nil
}

// ParseBody reads the body of an HTTP request in structured mode: a batch
// (ParseBatch) when contentType is BatchContentType, else one event
// (Parse).
func ParseBody(contentType string, b []byte) ([]Event, error) {
	if contentType == BatchContentType {
		return ParseBatch(b)
	}
	e, err := Parse(b)
	if err != nil {
		return nil, err
	}
	return []Event{e}, nil
}

// UnmarshalJSON implements json.Unmarshaler with the rules of Parse.
func (e *Event) UnmarshalJSON(b []byte) error {
	parsed, err := Parse(b)
	if err != nil {
		return err
	}
	*e = parsed
	return nil
}

// decode fills e from the members of a JSON object without validating the
// required attributes.
func (e *Event) decode(b []byte) error {
	if first(b) != '{' {
		return fmt.Errorf("%w: an event must be a JSON object", ErrMalformed)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	for name, raw := range members {
		if isNull(raw) {
			continue // the JSON format treats a null attribute as absent
		}
		var err error
		switch name {
		case attrSpecVersion:
			e.SpecVersion, err = stringAttr(name, raw)
		case attrID:
			e.ID, err = stringAttr(name, raw)
		case attrSource:
			e.Source, err = stringAttr(name, raw)
		case attrType:
			e.Type, err = stringAttr(name, raw)
		case attrSubject:
			e.Subject, err = optionalStringAttr(name, raw)
		case attrDataContentType:
			e.DataContentType, err = optionalStringAttr(name, raw)
		case attrDataSchema:
			e.DataSchema, err = optionalStringAttr(name, raw)
		case attrTime:
			e.Time, err = timeAttr(raw)
		case memberData:
			var buf bytes.Buffer
			if err := json.Compact(&buf, raw); err != nil {
				return fmt.Errorf("%w: %v", ErrInvalidData, err)
			}
			e.Data = buf.Bytes()
		case memberDataBase64:
			e.DataBase64, err = base64Member(raw)
		default:
			if err := checkExtensionName(name); err != nil {
				return err
			}
			v, err := extensionValue(name, raw)
			if err != nil {
				return err
			}
			if e.Extensions == nil {
				e.Extensions = make(map[string]any)
			}
			e.Extensions[name] = v
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Validate reports every way e breaks the CloudEvents 1.0 rules, joined; nil
// means e can be sent.
func (e Event) Validate() error {
	_, err := e.validate()
	return err
}

// validate is Validate that also reports whether Data holds whitespace for
// json.Compact to remove.
func (e Event) validate() (spaced bool, err error) {
	var errs []error
	switch e.SpecVersion {
	case SpecVersion:
	case "":
		errs = append(errs, ErrMissingSpecVersion)
	default:
		errs = append(errs, fmt.Errorf("%w: got %q", ErrUnsupportedSpecVersion, e.SpecVersion))
	}
	if e.ID == "" {
		errs = append(errs, ErrMissingID)
	}
	if e.Source == "" {
		errs = append(errs, ErrMissingSource)
	} else if !simpleURIReference(e.Source) {
		if _, err := url.Parse(e.Source); err != nil {
			errs = append(errs, fmt.Errorf("%w: source %q is not a URI-reference: %v", ErrInvalidAttribute, e.Source, err))
		}
	}
	if e.Type == "" {
		errs = append(errs, ErrMissingType)
	}
	if e.DataContentType != "" {
		if err := checkMediaType(e.DataContentType); err != nil {
			errs = append(errs, err)
		}
	}
	if e.DataSchema != "" {
		if u, err := url.Parse(e.DataSchema); err != nil || !u.IsAbs() {
			errs = append(errs, fmt.Errorf("%w: dataschema %q is not an absolute URI", ErrInvalidAttribute, e.DataSchema))
		}
	}
	if err := checkTime(e.Time); err != nil {
		errs = append(errs, err)
	}
	if !extensionsValid(e.Extensions) {
		// Report every bad one, in name order.
		for _, name := range slices.Sorted(maps.Keys(e.Extensions)) {
			if err := checkExtensionName(name); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := checkExtensionValue(name, e.Extensions[name]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if e.Data != nil {
		var valid bool
		if valid, spaced = scanJSON(e.Data); !valid {
			errs = append(errs, ErrInvalidData)
		}
	}
	if e.Data != nil && e.DataBase64 != nil {
		errs = append(errs, ErrDataConflict)
	}
	return spaced, errors.Join(errs...)
}

// MarshalJSON writes e in structured JSON mode, extensions as top-level
// attributes in name order. It refuses an event that fails Validate.
func (e Event) MarshalJSON() ([]byte, error) {
	spaced, err := e.validate()
	if err != nil {
		return nil, err
	}
	return e.appendJSON(make([]byte, 0, e.sizeHint()), spaced), nil
}

// AppendJSON appends to b what MarshalJSON writes and returns the extended
// slice, so that many events can be written into one buffer. It refuses an
// event that fails Validate and then returns b unchanged.
func (e Event) AppendJSON(b []byte) ([]byte, error) {
	spaced, err := e.validate()
	if err != nil {
		return b, err
	}
	return e.appendJSON(b, spaced), nil
}

// sizeHint is about the length of e in JSON, for allocating once.
func (e Event) sizeHint() int {
	// Extensions are guessed at: ficus's are short, and the partition key
	// is usually the subject.
	return 160 + len(e.ID) + len(e.Source) + len(e.Type) + 2*len(e.Subject) +
		len(e.DataContentType) + len(e.DataSchema) + len(e.Data) + len(e.DataBase64)*4/3 +
		32*len(e.Extensions)
}

// appendJSON writes a valid event: Validate has accepted it; spaced says
// whether its data needs compacting.
func (e Event) appendJSON(b []byte, spaced bool) []byte {
	// The member names are plain ASCII, written as JSON strings as they
	// are; specversion is required, so it comes first and every other
	// member after a comma.
	b = append(b, `{"`+attrSpecVersion+`":`...)
	b = appendString(b, e.SpecVersion)
	b = append(b, `,"`+attrID+`":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"`+attrSource+`":`...)
	b = appendString(b, e.Source)
	b = append(b, `,"`+attrType+`":`...)
	b = appendString(b, e.Type)
	if e.Subject != "" {
		b = append(b, `,"`+attrSubject+`":`...)
		b = appendString(b, e.Subject)
	}
	if !e.Time.IsZero() {
		// An RFC 3339 timestamp has no character JSON escapes.
		b = append(b, `,"`+attrTime+`":"`...)
		b = e.Time.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	if e.DataContentType != "" {
		b = append(b, `,"`+attrDataContentType+`":`...)
		b = appendString(b, e.DataContentType)
	}
	if e.DataSchema != "" {
		b = append(b, `,"`+attrDataSchema+`":`...)
		b = appendString(b, e.DataSchema)
	}
	if len(e.Extensions) > 0 {
		var small [8]string // names of a few extensions sort without allocating
		names := small[:0]
		for name := range e.Extensions {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			// Validate accepted the name: a-z and 0-9 only.
			b = append(b, ',', '"')
			b = append(b, name...)
			b = append(b, '"', ':')
			b = appendExtension(b, e.Extensions[name])
		}
	}
	if e.Data != nil {
		b = append(b, `,"`+memberData+`":`...)
		if spaced {
			buf := bytes.NewBuffer(b)
			_ = json.Compact(buf, e.Data) // validate checked the data
			b = buf.Bytes()
		} else {
			b = append(b, e.Data...)
		}
	}
	if e.DataBase64 != nil {
		// Base64 has no character JSON escapes.
		b = append(b, `,"`+memberDataBase64+`":"`...)
		b = base64.StdEncoding.AppendEncode(b, e.DataBase64)
		b = append(b, '"')
	}
	return append(b, '}')
}

func stringAttr(name string, raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%w: %s must be a JSON string, got %s", ErrInvalidAttribute, name, truncate(raw))
	}
	return s, nil
}

// optionalStringAttr reads an optional attribute, which the specification
// requires to be non-empty when present.
func optionalStringAttr(name string, raw json.RawMessage) (string, error) {
	s, err := stringAttr(name, raw)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", fmt.Errorf("%w: %s must be non-empty when present (omit it instead)", ErrInvalidAttribute, name)
	}
	return s, nil
}

func timeAttr(raw json.RawMessage) (time.Time, error) {
	s, err := stringAttr(attrTime, raw)
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: time %q is not an RFC 3339 timestamp such as 2026-01-02T15:04:05Z", ErrInvalidAttribute, s)
	}
	if t.IsZero() {
		return time.Time{}, fmt.Errorf("%w: time %q is the zero time, which ficus reads as absent", ErrInvalidAttribute, s)
	}
	return t, nil
}

// checkMediaType accepts an RFC 2046 media type such as "application/json"
// or "text/plain; charset=utf-8".
func checkMediaType(s string) error {
	if simpleMediaType(s) {
		return nil
	}
	mt, _, err := mime.ParseMediaType(s)
	if err == nil {
		if typ, sub, ok := strings.Cut(mt, "/"); !ok || typ == "" || sub == "" {
			err = errors.New("want type/subtype")
		}
	}
	if err != nil {
		return fmt.Errorf("%w: datacontenttype %q is not a media type: %v", ErrInvalidAttribute, s, err)
	}
	return nil
}

// checkTime makes sure t can be written as an RFC 3339 timestamp that reads
// back as the same instant.
func checkTime(t time.Time) error {
	if t.IsZero() {
		return nil
	}
	if t.Year() < 0 || t.Year() > 9999 {
		return fmt.Errorf("%w: time %s is outside the years 0000-9999 RFC 3339 can write", ErrInvalidAttribute, t)
	}
	if _, offset := t.Zone(); offset%60 != 0 || offset <= -24*3600 || offset >= 24*3600 {
		return fmt.Errorf("%w: time %s has a zone offset RFC 3339 cannot write (use whole minutes within a day, or UTC)", ErrInvalidAttribute, t)
	}
	return nil
}

func base64Member(raw json.RawMessage) ([]byte, error) {
	s, err := stringAttr(memberDataBase64, raw)
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: data_base64 is not standard base64: %v", ErrInvalidAttribute, err)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

func checkExtensionName(name string) error {
	if !extensionNameValid(name) {
		return fmt.Errorf("%w: %q", ErrInvalidExtensionName, name)
	}
	return nil
}

// extensionNameValid reports whether name is 1 to 20 characters a-z and
// 0-9 and not reserved.
func extensionNameValid(name string) bool {
	if name == "" || len(name) > MaxExtensionNameLen || slices.Contains(reservedNames, name) {
		return false
	}
	for _, c := range []byte(name) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// extensionValue reads the JSON value of an extension attribute.
func extensionValue(name string, raw json.RawMessage) (any, error) {
	switch first(raw) {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidExtensionValue, name, err)
		}
		return s, nil
	case 't', 'f':
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidExtensionValue, name, err)
		}
		return b, nil
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is %s", ErrInvalidExtensionValue, name, truncate(raw))
	}
	return int32(n), nil
}

// extensionInt returns an extension value of an integer type as an int64,
// clamping unsigned values above the int64 range, and whether v has an
// integer type.
func extensionInt(v any) (int64, bool) {
	switch v := v.(type) {
	case int:
		return int64(v), true
	case int8:
		return int64(v), true
	case int16:
		return int64(v), true
	case int32:
		return int64(v), true
	case int64:
		return v, true
	case uint:
		return int64(min(uint64(v), math.MaxInt64)), true
	case uint8:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint32:
		return int64(v), true
	case uint64:
		return int64(min(v, math.MaxInt64)), true
	}
	return 0, false
}

// extensionValueValid reports whether v is an extension value the JSON
// format can carry: a string, a bool or an integer in the 32-bit signed
// range.
func extensionValueValid(v any) bool {
	switch v.(type) {
	case string, bool:
		return true
	}
	n, ok := extensionInt(v)
	return ok && n >= math.MinInt32 && n <= math.MaxInt32
}

// extensionsValid reports whether every extension has a valid name and
// value, without allocating.
func extensionsValid(ext map[string]any) bool {
	for name, v := range ext {
		if !extensionNameValid(name) || !extensionValueValid(v) {
			return false
		}
	}
	return true
}

// checkExtensionValue says why an extension value cannot be carried.
func checkExtensionValue(name string, v any) error {
	if extensionValueValid(v) {
		return nil
	}
	n, ok := extensionInt(v)
	if !ok {
		return fmt.Errorf("%w: %s has Go type %T", ErrInvalidExtensionValue, name, v)
	}
	return fmt.Errorf("%w: %s is %d, outside the 32-bit signed range", ErrInvalidExtensionValue, name, n)
}

// appendExtension writes a valid extension value.
func appendExtension(b []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		return appendString(b, v)
	case bool:
		return strconv.AppendBool(b, v)
	}
	n, _ := extensionInt(v)
	return strconv.AppendInt(b, n, 10)
}

// appendString writes s as a JSON string the way encoding/json does
// without HTML escaping (json.Encoder with SetEscapeHTML(false)).
func appendString(b []byte, s string) []byte { return AppendJSONString(b, s, false) }

// AppendJSONString appends s as a JSON string the way encoding/json writes
// it: quote, backslash and control characters escaped (\b, \f, \n, \r and
// \t short), invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped, and, with
// escapeHTML (as json.Marshal does), <, > and & as \u003c, \u003e and
// \u0026; everything else as it is.
func AppendJSONString(b []byte, s string, escapeHTML bool) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && (!escapeHTML || (c != '<' && c != '>' && c != '&')) {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// first returns the first non-space byte of b, or 0.
func first(b []byte) byte {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// truncate shortens a JSON value for an error message.
func truncate(raw json.RawMessage) string {
	const limit = 40
	if len(raw) <= limit {
		return string(raw)
	}
	return string(raw[:limit]) + "..."
}
