package idempotency

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidKey is wrapped by every error ParseKeyHeader returns; the rest of
// the message says what is wrong and is fit to show the client.
var ErrInvalidKey = errors.New("invalid Idempotency-Key")

// MaxKeyLength is the longest key ParseKeyHeader accepts, in characters.
const MaxKeyLength = 255

// keyExample shows a well-formed header in error messages.
const keyExample = `send a unique value such as a UUID, e.g. Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"`

// ParseKeyHeader returns the key in an Idempotency-Key header value. The
// draft defines the value as a Structured Field String (RFC 8941):
// printable ASCII in double quotes, where only \" and \\ are escapes.
// Leniently, since many clients send it so, a bare key of printable ASCII
// without spaces or quotes is accepted too: "abc" and abc are the same key.
// Surrounding spaces are ignored. An empty key, one longer than MaxKeyLength
// characters, and control or non-ASCII characters are rejected with an
// error wrapping ErrInvalidKey.
func ParseKeyHeader(v string) (string, error) {
	v = strings.Trim(v, " \t")
	switch {
	case v == "":
		return "", fmt.Errorf("%w: the value is empty; %s", ErrInvalidKey, keyExample)
	case v[0] == '"':
		return parseQuotedKey(v)
	}
	for i := 0; i < len(v); i++ {
		if err := checkKeyByte(v, i); err != nil {
			return "", err
		}
		switch v[i] {
		case ' ':
			return "", fmt.Errorf("%w: a space at position %d; a key with spaces must be a quoted string, e.g. Idempotency-Key: \"my key\"", ErrInvalidKey, i+1)
		case '"', '\\':
			return "", fmt.Errorf("%w: %q at position %d of an unquoted key; quote the key and escape it as \\%c", ErrInvalidKey, v[i], i+1, v[i])
		}
	}
	if len(v) > MaxKeyLength {
		return "", tooLong(len(v))
	}
	return v, nil
}

// parseQuotedKey parses an sf-string; v starts with '"'.
func parseQuotedKey(v string) (string, error) {
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		if err := checkKeyByte(v, i); err != nil {
			return "", err
		}
		switch c := v[i]; c {
		case '\\':
			i++
			if i == len(v) || v[i] != '"' && v[i] != '\\' {
				return "", fmt.Errorf(`%w: a backslash at position %d that does not escape '"' or '\'; inside quotes only \" and \\ are escapes`, ErrInvalidKey, i)
			}
			b.WriteByte(v[i])
		case '"':
			if i != len(v)-1 {
				return "", fmt.Errorf("%w: %q follows the closing quote at position %d; %s", ErrInvalidKey, v[i+1:], i+1, keyExample)
			}
			if b.Len() == 0 {
				return "", fmt.Errorf("%w: the quoted string is empty; %s", ErrInvalidKey, keyExample)
			}
			return b.String(), nil
		default:
			b.WriteByte(c)
		}
		if b.Len() > MaxKeyLength {
			return "", tooLong(len(v))
		}
	}
	return "", fmt.Errorf("%w: the quoted string has no closing quote; %s", ErrInvalidKey, keyExample)
}

// checkKeyByte rejects a control or non-ASCII byte at v[i].
func checkKeyByte(v string, i int) error {
	switch c := v[i]; {
	case c < 0x20 || c == 0x7f:
		return fmt.Errorf("%w: control character 0x%02x at position %d; use printable ASCII, e.g. a UUID", ErrInvalidKey, c, i+1)
	case c >= 0x80:
		return fmt.Errorf("%w: non-ASCII byte 0x%02x at position %d; use printable ASCII, e.g. a UUID", ErrInvalidKey, c, i+1)
	}
	return nil
}

func tooLong(n int) error {
	return fmt.Errorf("%w: the value is %d characters long, more than the %d allowed; use a shorter key such as a UUID", ErrInvalidKey, n, MaxKeyLength)
}
