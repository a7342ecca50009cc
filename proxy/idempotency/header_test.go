package idempotency_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ficuslabs/ficus/proxy/idempotency"
)

func TestParseKeyHeader(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("k", idempotency.MaxKeyLength)
	tests := []struct {
		in, want string
		errHas   string // non-empty: the error must contain it
	}{
		{in: `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, want: "8e03978e-40d5-43e8-bc93-6894a57f9324"},
		{in: `8e03978e-40d5-43e8-bc93-6894a57f9324`, want: "8e03978e-40d5-43e8-bc93-6894a57f9324"},
		{in: "  \t\"abc\" ", want: "abc"},
		{in: `"my key"`, want: "my key"},
		{in: `"a \"quoted\" \\ key"`, want: `a "quoted" \ key`},
		{in: `"~!#$%&'()*+,-./:;<=>?@[]^_{|}"`, want: `~!#$%&'()*+,-./:;<=>?@[]^_{|}`},
		{in: `order:42/retry#1`, want: `order:42/retry#1`},
		{in: `"` + long + `"`, want: long},
		{in: long, want: long},

		{in: ``, errHas: "empty"},
		{in: "  \t ", errHas: "empty"},
		{in: `""`, errHas: "empty"},
		{in: `"` + long + `k"`, errHas: "more than the 255"},
		{in: long + "k", errHas: "more than the 255"},
		{in: "\"ab\ncd\"", errHas: "control character 0x0a at position 4"},
		{in: "ab\x00cd", errHas: "control character 0x00 at position 3"},
		{in: "\"a\tb\"", errHas: "control character 0x09"},
		{in: "ab\x7f", errHas: "control character 0x7f"},
		{in: `"clé"`, errHas: "non-ASCII byte 0xc3 at position 4"},
		{in: `my key`, errHas: "a space at position 3"},
		{in: `abc"`, errHas: `'"' at position 4`},
		{in: `ab\c`, errHas: `'\\' at position 3`},
		{in: `"abc`, errHas: "no closing quote"},
		{in: `"abc\"`, errHas: "no closing quote"},
		{in: `"ab\c"`, errHas: "a backslash at position 4"},
		{in: `"abc";p=1`, errHas: "follows the closing quote"},
		{in: `"a" "b"`, errHas: "follows the closing quote"},
	}
	for _, tt := range tests {
		got, err := idempotency.ParseKeyHeader(tt.in)
		if tt.errHas == "" {
			if err != nil || got != tt.want {
				t.Errorf("ParseKeyHeader(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil || !errors.Is(err, idempotency.ErrInvalidKey) || !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("ParseKeyHeader(%q) = %q, %v; want an ErrInvalidKey saying %q", tt.in, got, err, tt.errHas)
		}
	}
}

func FuzzParseKeyHeader(f *testing.F) {
	for _, s := range []string{
		`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, `8e03978e`, `"a \"b\" \\"`, `""`, `"abc`, `a b`, "a\x00", `"é"`,
		`"abc";x=1`, ` "x" `, strings.Repeat("z", 256),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		k, err := idempotency.ParseKeyHeader(v)
		if err != nil {
			if !errors.Is(err, idempotency.ErrInvalidKey) {
				t.Fatalf("ParseKeyHeader(%q): error %v does not wrap ErrInvalidKey", v, err)
			}
			return
		}
		if k == "" || len(k) > idempotency.MaxKeyLength {
			t.Fatalf("ParseKeyHeader(%q) = %q: empty or too long", v, k)
		}
		for i := 0; i < len(k); i++ {
			if k[i] < 0x20 || k[i] > 0x7e {
				t.Fatalf("ParseKeyHeader(%q) = %q with byte 0x%02x", v, k, k[i])
			}
		}
		// The key round-trips as an sf-string, and bare when it can be.
		quoted := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(k) + `"`
		if again, err := idempotency.ParseKeyHeader(quoted); err != nil || again != k {
			t.Fatalf("ParseKeyHeader(%q) = %q, %v; want %q back", quoted, again, err, k)
		}
		if !strings.ContainsAny(k, ` "\`) {
			if again, err := idempotency.ParseKeyHeader(k); err != nil || again != k {
				t.Fatalf("bare ParseKeyHeader(%q) = %q, %v", k, again, err)
			}
		}
	})
}
