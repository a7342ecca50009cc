package mes

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
)

// decodeJSON reads exactly one JSON object from r into v, refusing unknown
// fields, and explains what is wrong in terms of the request body. Errors
// wrap errInvalidRequest, or *http.MaxBytesError when the body is too large.
func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describeJSONError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if tooLarge, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return tooLarge
		}
		return fmt.Errorf("%w: request body has data after the JSON object; send a single object", errInvalidRequest)
	}
	return nil
}

func describeJSONError(err error) error {
	if tooLarge, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return tooLarge
	}
	if syntax, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Errorf("%w: malformed JSON at byte %d: %s", errInvalidRequest, syntax.Offset,
			strings.TrimPrefix(syntax.Error(), "json: "))
	}
	if typ, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if typ.Field == "" {
			return fmt.Errorf("%w: request body must be a JSON object, got a JSON %s", errInvalidRequest, typ.Value)
		}
		return fmt.Errorf("%w: field %q must be %s, got a JSON %s", errInvalidRequest, typ.Field, jsonKind(typ.Type), typ.Value)
	}
	switch {
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: request body is empty; send a JSON object", errInvalidRequest)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: request body ends in the middle of the JSON object", errInvalidRequest)
	}
	// encoding/json reports unknown fields only as text.
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Errorf("%w: unknown field %s", errInvalidRequest, field)
	}
	return fmt.Errorf("%w: invalid JSON: %s", errInvalidRequest, strings.TrimPrefix(err.Error(), "json: "))
}

// jsonKind names a Go type the way a JSON client thinks of it.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a " + t.Kind().String()
}
