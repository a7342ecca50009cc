package idempotency

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFingerprintSameRequest(t *testing.T) {
	t.Parallel()
	const ct = "application/json"
	tests := []struct {
		name   string
		ct     string
		a, b   string
		sameFP bool
	}{
		{"member order", ct, `{"a":1, "b":2}`, `{"b":2,"a":1}`, true},
		{"nested member order", ct, `{"x":{"b":[1,{"d":4,"c":3}],"a":null}}`, "{\n  \"x\": {\"a\": null, \"b\": [1, {\"c\":3, \"d\":4}]}\n}\n", true},
		{"whitespace", ct, " [ 1 ,\t2 ]\r\n", `[1,2]`, true},
		{"string escapes", ct, `{"s":"\u0041\/\u00e9\ud83d\ude00"}`, `{"s":"A/é😀"}`, true},
		{"escape case", ct, `["\u001F\uD800"]`, `["\u001f\ud800"]`, true},
		{"short escapes", ct, `["\u000a\u0009"]`, `["\n\t"]`, true},
		{"json suffix type", "application/merge-patch+json; charset=utf-8", `{"b":1,"a":2}`, `{"a":2,"b":1}`, true},
		{"type case and parameters", "Application/JSON ; charset=UTF-8", `{"b":1,"a":2}`, `{"a":2,"b":1}`, true},
		{"array order matters", ct, `[1,2]`, `[2,1]`, false},
		{"numbers as written", ct, `{"n":1}`, `{"n":1.0}`, false},
		{"exponent as written", ct, `[1e2]`, `[100]`, false},
		{"values differ", ct, `{"a":1}`, `{"a":2}`, false},
		{"duplicate keys keep order", ct, `{"a":1,"a":2}`, `{"a":2,"a":1}`, false},
		{"lone surrogates differ", ct, `["\ud800"]`, `["\udbff"]`, false},
		{"lone surrogate is not U+FFFD", ct, `["\ud800"]`, `["\ufffd"]`, false},
		{"plain text is raw", "text/plain", `{"a":1,"b":2}`, `{"b":2,"a":1}`, false},
		{"no content type is raw", "", `{"a":1,"b":2}`, `{"b":2,"a":1}`, false},
		{"not a json suffix", "application/jsonx", `{"a":1,"b":2}`, `{"b":2,"a":1}`, false},
		{"malformed json is raw", ct, `{"a":1,}`, `{"a":1, }`, false},
		{"trailing data is raw", ct, `{"a":1} {}`, `{"a":1}  {}`, false},
		{"invalid utf-8 is raw", ct, "[\"\xff\"]", "[\"\xfe\"]", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := Fingerprint("POST", "/api/v1/orders", tt.ct, []byte(tt.a))
			b := Fingerprint("POST", "/api/v1/orders", tt.ct, []byte(tt.b))
			if (a == b) != tt.sameFP {
				t.Fatalf("fingerprints of %q and %q equal = %v, want %v", tt.a, tt.b, a == b, tt.sameFP)
			}
		})
	}
}

func TestFingerprintCoversMethodAndPath(t *testing.T) {
	t.Parallel()
	base := Fingerprint("POST", "/orders?x=1", "application/json", []byte(`{}`))
	if len(base) != 64 || strings.Trim(base, "0123456789abcdef") != "" {
		t.Fatalf("fingerprint %q is not 64 hex digits", base)
	}
	for _, other := range []struct{ method, path, body string }{
		{"PUT", "/orders?x=1", `{}`},
		{"POST", "/orders?x=2", `{}`},
		{"POST", "/orders", `{}`},
		{"POST", "/orders?x=1", `[]`},
		{"POS", "T/orders?x=1", `{}`}, // field boundaries are part of the hash
		{"POST", "/orders?x=1{", `}`},
	} {
		if fp := Fingerprint(other.method, other.path, "application/json", []byte(other.body)); fp == base {
			t.Errorf("%s %s %s has the fingerprint of POST /orders?x=1 {}", other.method, other.path, other.body)
		}
	}
}

func TestCanonicalJSON(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{`{"b" : [ true , false , null ] , "a" : -0.5e+10 }`, `{"a":-0.5e+10,"b":[true,false,null]}`},
		{`"\"\\\/\b\f\n\r\t\u0000\u007f\u2028"`, "\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0000\x7f\u2028\""},
		{`{"é":1,"e":2,"":3}`, `{"":3,"e":2,"é":1}`},
		{`[{},[],""]`, `[{},[],""]`},
		{`0`, `0`},
		{"\ufeff{}", ""}, // a byte order mark is not JSON
	}
	for _, tt := range tests {
		got, ok := canonicalJSON([]byte(tt.in))
		if tt.want == "" {
			if ok {
				t.Errorf("canonicalJSON(%q) = %q, want malformed", tt.in, got)
			}
			continue
		}
		if !ok || string(got) != tt.want {
			t.Errorf("canonicalJSON(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
}

func TestCanonicalJSONRejectsMalformed(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		``, ` `, `{`, `}`, `{"a"}`, `{"a":}`, `{a:1}`, `[1,]`, `[,1]`, `01`, `-`, `1.`, `.5`, `1e`, `+1`,
		`tru`, `nul`, `"abc`, `"\x"`, `"\u12"`, `"\u12g4"`, "\"a\nb\"", `{"a":1}}`, `[1 2]`, `NaN`,
		strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1),
	} {
		if got, ok := canonicalJSON([]byte(in)); ok {
			t.Errorf("canonicalJSON(%q) = %q, want malformed", in, got)
		}
	}
	deep := strings.Repeat(`{"a":[`, maxJSONDepth/2) + strings.Repeat(`]}`, maxJSONDepth/2)
	if _, ok := canonicalJSON([]byte(deep)); !ok {
		t.Errorf("a document %d deep was rejected", maxJSONDepth)
	}
}

func FuzzFingerprint(f *testing.F) {
	for _, s := range []string{
		`{"a":1, "b":2}`, `{"b":2,"a":1}`, `[1,2.50,-3e-2,{"z":null,"y":[true,false]}]`,
		`"\ud83d\ude00\ud800\u00e9"`, `{"a":1,"a":{"c":"\n","b":[]}}`, `{"a":1,}`, "[\"\xff\"]", `  `,
		`{"":{"":{"":""}}}`, `"\ud800\u0041"`,
	} {
		f.Add("POST", "/api/v1/orders?x=1", s)
	}
	f.Fuzz(func(t *testing.T, method, path, body string) {
		fp := Fingerprint(method, path, "application/json", []byte(body))
		c, ok := canonicalJSON([]byte(body))
		if !ok {
			if json.Valid([]byte(body)) && utf8.ValidString(body) && nesting(body) <= maxJSONDepth {
				t.Fatalf("valid JSON %q was taken for malformed", body)
			}
			// Malformed JSON is fingerprinted as it is.
			if raw := Fingerprint(method, path, "text/plain", []byte(body)); raw != fp {
				t.Fatalf("malformed %q: fingerprint %s, want the raw body's %s", body, fp, raw)
			}
			return
		}
		if !json.Valid([]byte(body)) || !json.Valid(c) {
			t.Fatalf("canonicalJSON accepted %q (giving %q), which is not JSON", body, c)
		}
		again, ok := canonicalJSON(c)
		if !ok || !bytes.Equal(again, c) {
			t.Fatalf("canonical form %q of %q is not stable: %q, %v", c, body, again, ok)
		}
		if cfp := Fingerprint(method, path, "application/json", c); cfp != fp {
			t.Fatalf("fingerprint of canonical %q differs from that of %q", c, body)
		}
		var want, got any
		decode(t, []byte(body), &want)
		decode(t, c, &got)
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("canonical form %q of %q means something else: %#v, want %#v", c, body, got, want)
		}
	})
}

// nesting is an upper bound of the bracket depth of s.
func nesting(s string) int {
	depth, most := 0, 0
	for _, b := range []byte(s) {
		if b == '[' || b == '{' {
			depth++
			most = max(most, depth)
		}
	}
	return most
}

func decode(t *testing.T, data []byte, v any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		t.Fatalf("decode %q: %v", data, err)
	}
}

func BenchmarkFingerprint(b *testing.B) {
	body := []byte(`{"client_ref":"po-2031-0042","customer":{"name":"Acme GmbH","vat":"DE123456789"},` +
		`"items":[{"part":"bracket-7","qty":120,"material":"AlMg3","finish":"anodised"},` +
		`{"part":"flange-2","qty":40,"material":"S235","finish":"zinc"}],"notes":"deliver to gate 4"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		Fingerprint("POST", "/api/v1/orders", "application/json", body)
	}
}
