package cloudevent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"maps"
	"mime"
	"net/url"
	"slices"
	"testing"
	"time"
)

// referenceMarshalJSON is the straightforward encoder MarshalJSON must stay
// byte-identical to: every string through json.Encoder without HTML
// escaping, data through json.Compact.
func referenceMarshalJSON(e Event) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	writeMember := func(name string, value []byte) {
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		buf.Write(referenceQuote(name))
		buf.WriteByte(':')
		buf.Write(value)
	}
	writeString := func(name, value string) {
		if value != "" {
			writeMember(name, referenceQuote(value))
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
		var v []byte
		switch x := e.Extensions[name].(type) {
		case string:
			v = referenceQuote(x)
		default:
			v, _ = json.Marshal(x) // bools and integers in range
		}
		writeMember(name, v)
	}
	if e.Data != nil {
		var data bytes.Buffer
		if err := json.Compact(&data, e.Data); err != nil {
			return nil, err
		}
		writeMember(memberData, data.Bytes())
	}
	if e.DataBase64 != nil {
		writeMember(memberDataBase64, referenceQuote(base64.StdEncoding.EncodeToString(e.DataBase64)))
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func referenceQuote(s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"", "plain", `quote " and backslash \`, "<html> & 'apostrophes'",
		"\x00\x01\x07\b\t\n\v\f\r\x1b\x1f\x7f", "tab\tnew\nline",
		"ünïcödé ✓ 日本", "\u2028 and \u2029", "\xff\xfe bad \xc3 UTF-8 \xe2\x82",
		"emoji 🦆", "\ufffd replacement", "/a/b?c=d#e",
	} {
		want := referenceQuote(s)
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}

func TestScanJSONSeesWhitespaceOutsideStrings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		json string
		want bool
	}{
		{`{"a":1}`, false},
		{`{"a b":"c d"}`, false},
		{`{"a": 1}`, true},
		{"[1,\n2]", true},
		{`"esc \" still in string "`, false},
		{`["\\", 1]`, true},
		{`["\\"]`, false},
		{` 1`, true},
		{"1\t", true},
	}
	for _, tt := range tests {
		valid, spaced := scanJSON([]byte(tt.json))
		if !valid || spaced != tt.want {
			t.Errorf("scanJSON(%s) = %v, %v; want true, %v", tt.json, valid, spaced, tt.want)
		}
	}
}

func TestMarshalJSONMatchesReference(t *testing.T) {
	t.Parallel()
	when := time.Date(2026, 3, 4, 5, 6, 7, 890123000, time.FixedZone("", 3*3600))
	events := []Event{
		{SpecVersion: "1.0", ID: "1", Source: "/s", Type: "t"},
		{
			SpecVersion: "1.0", ID: "0/16B3748-0", Source: "ficus-cdc://shop/slot", Type: "dev.ficus.cdc.insert",
			Subject: "shop.orders/a%2Cb", Time: when, DataContentType: "application/json",
			DataSchema: "https://ficus.dev/s.json",
			Extensions: map[string]any{"partitionkey": "shop.orders/<1>", "xid": int64(-7), "replay": true,
				"u8": uint8(200), "big": uint64(1<<31 - 1)},
			Data: json.RawMessage("{ \"a\" : [1, \"x y\\n\", {\"<\": null}] }\n"),
		},
		{SpecVersion: "1.0", ID: "\u2028", Source: "/\xff", Type: "t\x00", DataBase64: []byte{0, 1, 0xfe, 0xff}},
		{SpecVersion: "1.0", ID: "1", Source: "/s", Type: "t", DataBase64: []byte{}},
		{SpecVersion: "1.0", ID: "1", Source: "/s", Type: "t", DataContentType: "text/plain", Data: json.RawMessage(`"hi"`)},
	}
	for i, e := range events {
		want, err := referenceMarshalJSON(e)
		if err != nil {
			t.Fatalf("event %d: reference: %v", i, err)
		}
		got, err := e.MarshalJSON()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("event %d: MarshalJSON = %s, %v\nwant %s", i, got, err, want)
		}
		prefix := []byte("[x,")
		got, err = e.AppendJSON(prefix)
		if err != nil || !bytes.Equal(got, append([]byte("[x,"), want...)) {
			t.Errorf("event %d: AppendJSON = %s, %v\nwant [x,%s", i, got, err, want)
		}
	}
}

func TestAppendJSONRefusesAnInvalidEventAndKeepsTheBuffer(t *testing.T) {
	t.Parallel()
	b := []byte("kept")
	got, err := Event{SpecVersion: "1.0", ID: "1", Source: "/s", Type: "t", Extensions: map[string]any{"x": 1.5}}.AppendJSON(b)
	if err == nil || string(got) != "kept" {
		t.Fatalf("AppendJSON = %q, %v; want the buffer unchanged and an error", got, err)
	}
}

func FuzzMarshalJSONMatchesReference(f *testing.F) {
	f.Add("1", "/s", "t", "", "", "", int64(0), int16(0), "", int64(0), false, []byte(nil), []byte(nil))
	f.Add("0/1-0", "ficus-cdc://db/slot", "dev.ficus.cdc.update", "shop.orders/1", "application/json",
		"shop.orders/1", int64(1772600767890123000), int16(180), "xid", int64(42), true,
		[]byte(`{"new": {"id": 1, "s": "a\u2028<>&"}}`), []byte(nil))
	f.Add("\xff", "/\u2029", "t\n", "s\"\\", "text/plain; charset=utf-8", "\x00", int64(-1), int16(-90),
		"b", int64(1<<40), false, []byte(`"x"`), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, id, source, typ, subject, contentType, ext string, unixNano int64, offsetMinutes int16,
		extName string, extInt int64, extBool bool, data, bin []byte) {
		e := Event{
			SpecVersion: SpecVersion, ID: id, Source: source, Type: typ, Subject: subject,
			DataContentType: contentType,
			Extensions:      map[string]any{"partitionkey": ext, "flag": extBool},
		}
		if unixNano != 0 {
			e.Time = time.Unix(0, unixNano).In(time.FixedZone("", int(offsetMinutes)*60))
		}
		if extName != "" {
			e.Extensions[extName] = extInt
		}
		if data != nil {
			e.Data = data
		}
		if bin != nil {
			e.DataBase64 = bin
		}
		want, wantErr := referenceMarshalJSON(e)
		got, err := e.MarshalJSON()
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("MarshalJSON error %v, reference error %v", err, wantErr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("MarshalJSON = %s\nreference  %s", got, want)
		}
		if err == nil && !json.Valid(got) {
			t.Fatalf("MarshalJSON wrote invalid JSON: %s", got)
		}
	})
}

func TestScanJSONMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	deep := func(n int) []byte {
		return append(bytes.Repeat([]byte("["), n), bytes.Repeat([]byte("]"), n)...)
	}
	deepObject := func(n int) []byte {
		return append(append(bytes.Repeat([]byte(`{"a":`), n-1), `{}`...), bytes.Repeat([]byte("}"), n-1)...)
	}
	inputs := [][]byte{
		nil, []byte(""), []byte(" "), []byte("1"), []byte(" 1 "), []byte("-0"), []byte("01"), []byte("-"),
		[]byte("1."), []byte("1.5e+10"), []byte("1e"), []byte("1E-"), []byte(".5"), []byte("+1"), []byte("-01"),
		[]byte("0.0e0"), []byte("true"), []byte("tru"), []byte("truex"), []byte("null "), []byte("nul"),
		[]byte(`"a"`), []byte(`"a`), []byte(`"\u00e9\n\/\b\f\r\t\"\\"`), []byte(`"\u00g0"`), []byte(`"\x"`),
		[]byte("\"\x01\""), []byte("\"\x7f\xff\xfe\""), []byte(`"\u12"`), []byte(`"\`),
		[]byte(`{}`), []byte(`{ }`), []byte(`{"a":1,}`), []byte(`{"a" 1}`), []byte(`{"a":1 "b":2}`),
		[]byte(`{1:2}`), []byte(`{"a":[1,{"b":null}],"c":"d"}`), []byte(`[]`), []byte(`[1,]`), []byte(`[,1]`),
		[]byte(`[1 2]`), []byte(`[1] [2]`), []byte("[\n1\r,\t2 ]"), []byte(`{"a":}`), []byte(`{"a"`),
		deep(maxNestingDepth), deep(maxNestingDepth + 1), deepObject(maxNestingDepth), deepObject(maxNestingDepth + 1),
	}
	for _, in := range inputs {
		if got, _ := scanJSON(in); got != json.Valid(in) {
			t.Errorf("scanJSON(%.60q) = %v, json.Valid says %v", in, got, !got)
		}
	}
}

func FuzzScanJSONMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,-2.5e3,"x\u00e9"],"b":{"c":null,"d":true}}`, `[01]`, `"\ud800"`, "1 ", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		valid, spaced := scanJSON(in)
		if valid != json.Valid(in) {
			t.Fatalf("scanJSON(%q) = %v, json.Valid says %v", in, valid, !valid)
		}
		if valid {
			var compact bytes.Buffer
			if err := json.Compact(&compact, in); err != nil {
				t.Fatal(err)
			}
			if spaced == bytes.Equal(compact.Bytes(), in) {
				t.Fatalf("scanJSON(%q) says spaced=%v, but json.Compact gives %q", in, spaced, compact.Bytes())
			}
		}
	})
}

func FuzzAppendStringMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{"plain", "\x00\"\\\u2028\xff<&>", "日本 🦆"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := appendString(nil, s), referenceQuote(s); !bytes.Equal(got, want) {
			t.Fatalf("appendString(%q) = %s, want %s", s, got, want)
		}
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendJSONString(nil, s, true); !bytes.Equal(got, want) {
			t.Fatalf("AppendJSONString(%q, escapeHTML) = %s, json.Marshal gives %s", s, got, want)
		}
	})
}

func TestSimpleFormsAreWhatTheParsersAccept(t *testing.T) {
	t.Parallel()
	uris := []struct {
		s    string
		want bool
	}{
		{"/shop", true}, {"/", true}, {"ficus-cdc://shop/ficus_cdc", true}, {"https://ficus.dev/a/b:c", true},
		{"ficus://cdc", true}, {"//host/x", false}, {"shop", false}, {"http://h:80/", false},
		{"http://u@h/", false}, {"/a%20b", false}, {"/a?b", false}, {"/a#b", false}, {"HTTP://h/", false},
		{"1a://h/", false}, {"a://", false}, {"", false}, {"/a b", false},
	}
	for _, tt := range uris {
		if got := simpleURIReference(tt.s); got != tt.want {
			t.Errorf("simpleURIReference(%q) = %v, want %v", tt.s, got, tt.want)
		}
		if _, err := url.Parse(tt.s); tt.want && err != nil {
			t.Errorf("url.Parse(%q) fails though it is simple: %v", tt.s, err)
		}
	}
	types := []struct {
		s    string
		want bool
	}{
		{"application/json", true}, {"text/plain", true}, {"application/cloudevents+json", true},
		{"text/plain; charset=utf-8", false}, {"text", false}, {"/json", false}, {"a/b/c", false},
		{"a b/c", false}, {"", false},
	}
	for _, tt := range types {
		if got := simpleMediaType(tt.s); got != tt.want {
			t.Errorf("simpleMediaType(%q) = %v, want %v", tt.s, got, tt.want)
		}
		if _, _, err := mime.ParseMediaType(tt.s); tt.want && err != nil {
			t.Errorf("mime.ParseMediaType(%q) fails though it is simple: %v", tt.s, err)
		}
	}
}

func FuzzSimpleFormsAreWhatTheParsersAccept(f *testing.F) {
	for _, s := range []string{"/shop", "ficus-cdc://shop/slot", "application/json", "a://b:c/d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := url.Parse(s); simpleURIReference(s) && err != nil {
			t.Fatalf("simpleURIReference(%q) is true, but url.Parse fails: %v", s, err)
		}
		if _, _, err := mime.ParseMediaType(s); simpleMediaType(s) && err != nil {
			t.Fatalf("simpleMediaType(%q) is true, but mime.ParseMediaType fails: %v", s, err)
		}
	})
}
