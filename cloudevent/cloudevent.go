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
// []Event produces a single event or a batch body.
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
	} else if _, err := url.Parse(e.Source); err != nil {
		errs = append(errs, fmt.Errorf("%w: source %q is not a URI-reference: %v", ErrInvalidAttribute, e.Source, err))
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
	for _, name := range slices.Sorted(maps.Keys(e.Extensions)) {
		if err := checkExtensionName(name); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := extensionJSON(name, e.Extensions[name]); err != nil {
			errs = append(errs, err)
		}
	}
	if e.Data != nil && !json.Valid(e.Data) {
		errs = append(errs, ErrInvalidData)
	}
	if e.Data != nil && e.DataBase64 != nil {
		errs = append(errs, ErrDataConflict)
	}
	return errors.Join(errs...)
}

// MarshalJSON writes e in structured JSON mode, extensions as top-level
// attributes in name order. It refuses an event that fails Validate.
func (e Event) MarshalJSON() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	writeMember := func(name string, value []byte) {
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		buf.Write(quote(name))
		buf.WriteByte(':')
		buf.Write(value)
	}
	writeString := func(name, value string) {
		if value != "" {
			writeMember(name, quote(value))
		}
	}
	writeString(attrSpecVersion, e.SpecVersion)
	writeString(attrID, e.ID)
	writeString(attrSource, e.Source)
	writeString(attrType, e.Type)
	writeString(attrSubject, e.Subject)
	if !e.Time.IsZero() {
		writeString(attrTime, e.Time.Format(time.RFC3339Nano))
	}
	writeString(attrDataContentType, e.DataContentType)
	writeString(attrDataSchema, e.DataSchema)
	for _, name := range slices.Sorted(maps.Keys(e.Extensions)) {
		v, _ := extensionJSON(name, e.Extensions[name]) // checked by Validate
		writeMember(name, v)
	}
	if e.Data != nil {
		var data bytes.Buffer
		if err := json.Compact(&data, e.Data); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidData, err)
		}
		writeMember(memberData, data.Bytes())
	}
	if e.DataBase64 != nil {
		writeMember(memberDataBase64, quote(base64.StdEncoding.EncodeToString(e.DataBase64)))
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
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
	if name == "" || len(name) > MaxExtensionNameLen || slices.Contains(reservedNames, name) {
		return fmt.Errorf("%w: %q", ErrInvalidExtensionName, name)
	}
	for _, c := range []byte(name) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return fmt.Errorf("%w: %q", ErrInvalidExtensionName, name)
		}
	}
	return nil
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

// extensionJSON encodes an extension value, refusing types the JSON format
// cannot carry.
func extensionJSON(name string, v any) ([]byte, error) {
	var n int64
	switch v := v.(type) {
	case string:
		return quote(v), nil
	case bool:
		return strconv.AppendBool(nil, v), nil
	case int:
		n = int64(v)
	case int8:
		n = int64(v)
	case int16:
		n = int64(v)
	case int32:
		n = int64(v)
	case int64:
		n = v
	case uint:
		n = int64(min(uint64(v), math.MaxInt64))
	case uint8:
		n = int64(v)
	case uint16:
		n = int64(v)
	case uint32:
		n = int64(v)
	case uint64:
		n = int64(min(v, math.MaxInt64))
	default:
		return nil, fmt.Errorf("%w: %s has Go type %T", ErrInvalidExtensionValue, name, v)
	}
	if n < math.MinInt32 || n > math.MaxInt32 {
		return nil, fmt.Errorf("%w: %s is %d, outside the 32-bit signed range", ErrInvalidExtensionValue, name, n)
	}
	return strconv.AppendInt(nil, n, 10), nil
}

// quote writes s as a JSON string without escaping HTML characters.
func quote(s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // encoding a string cannot fail
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
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
