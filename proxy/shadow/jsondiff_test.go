package shadow

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strings"
	"testing"
)

func TestDiffJSON(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 300)
	tests := []struct {
		name   string
		a, b   string
		ignore []string
		max    int
		want   []Difference
	}{
		{name: "equal scalars", a: `"a"`, b: `"a"`},
		{name: "key order and whitespace", a: `{"a":1,"b":[1,2],"c":{"d":null}}`, b: "{ \"c\": {\"d\": null},\n \"b\": [1, 2], \"a\": 1 }"},
		{name: "numbers by value", a: `[1, 1.0, 100, 0, -0, 0.5, 1.25e2, 12]`, b: `[1.000, 1e0, 1E+2, 0.0e10, 0, 5e-1, 125, 12.0]`},
		{name: "large integers exact", a: `{"n":12345678901234567890}`, b: `{"n":12345678901234567891}`, want: []Difference{
			{Path: "n", Left: "12345678901234567890", Right: "12345678901234567891", Kind: DiffChanged},
		}},
		{name: "huge exponents equal", a: `[1e400, 1e99999999999999999999, 1e4611686018427387904, -5E-99999999999999999999]`,
			b: `[10e399, 10e99999999999999999998, 10e4611686018427387903, -0.5e-99999999999999999998]`},
		{name: "huge and large exponents differ", a: `[1e4611686018427387904]`, b: `[1e4611686018427387903]`, want: []Difference{
			{Path: "0", Left: "1e4611686018427387904", Right: "1e4611686018427387903", Kind: DiffChanged},
		}},
		{name: "huge exponents differ", a: `[1e99999999999999999999]`, b: `[1e99999999999999999998]`, want: []Difference{
			{Path: "0", Left: "1e99999999999999999999", Right: "1e99999999999999999998", Kind: DiffChanged},
		}},
		{name: "sign", a: `{"n":1}`, b: `{"n":-1}`, want: []Difference{
			{Path: "n", Left: "1", Right: "-1", Kind: DiffChanged},
		}},
		{name: "changed string", a: `{"name":"bolt"}`, b: `{"name":"nut"}`, want: []Difference{
			{Path: "name", Left: `"bolt"`, Right: `"nut"`, Kind: DiffChanged},
		}},
		{name: "changed bool", a: `{"ok":true}`, b: `{"ok":false}`, want: []Difference{
			{Path: "ok", Left: "true", Right: "false", Kind: DiffChanged},
		}},
		{name: "missing on each side", a: `{"a":1,"b":{"x":[1]}}`, b: `{"a":1,"c":"new"}`, want: []Difference{
			{Path: "b", Left: `{"x":[1]}`, Kind: DiffMissingRight},
			{Path: "c", Right: `"new"`, Kind: DiffMissingLeft},
		}},
		{name: "types", a: `{"a":1,"b":null,"c":{},"d":"1","e":[]}`, b: `{"a":"1","b":0,"c":[],"d":1,"e":false}`, want: []Difference{
			{Path: "a", Left: "1", Right: `"1"`, Kind: DiffType},
			{Path: "b", Left: "null", Right: "0", Kind: DiffType},
			{Path: "c", Left: "{}", Right: "[]", Kind: DiffType},
			{Path: "d", Left: `"1"`, Right: "1", Kind: DiffType},
			{Path: "e", Left: "[]", Right: "false", Kind: DiffType},
		}},
		{name: "root type", a: `{"a":1}`, b: `[1]`, want: []Difference{
			{Path: RootPath, Left: `{"a":1}`, Right: "[1]", Kind: DiffType},
		}},
		{name: "root scalar", a: `1`, b: `2`, want: []Difference{
			{Path: RootPath, Left: "1", Right: "2", Kind: DiffChanged},
		}},
		{name: "arrays by position", a: `{"items":[{"price":10},{"price":20},{"price":30}]}`, b: `{"items":[{"price":10},{"price":21}]}`, want: []Difference{
			{Path: "items.1.price", Left: "20", Right: "21", Kind: DiffChanged},
			{Path: "items.2", Left: `{"price":30}`, Kind: DiffMissingRight},
		}},
		{name: "longer right array", a: `[1]`, b: `[1,2,3]`, want: []Difference{
			{Path: "1", Right: "2", Kind: DiffMissingLeft},
			{Path: "2", Right: "3", Kind: DiffMissingLeft},
		}},
		{name: "path order", a: `{"b":1,"a":1,"items":[0,0,0,0,0,0,0,0,0,0,0,0]}`, b: `{"a":2,"b":2,"items":[0,0,1,0,0,0,0,0,0,0,1,0]}`, want: []Difference{
			{Path: "a", Left: "1", Right: "2", Kind: DiffChanged},
			{Path: "b", Left: "1", Right: "2", Kind: DiffChanged},
			{Path: "items.2", Left: "0", Right: "1", Kind: DiffChanged},
			{Path: "items.10", Left: "0", Right: "1", Kind: DiffChanged},
		}},
		{
			name:   "ignored paths",
			a:      `{"id":1,"created_at":"x","total":5,"items":[{"id":"a","qty":1},{"id":"b","qty":2}],"meta":{"x":1}}`,
			b:      `{"id":2,"created_at":"y","total":5,"items":[{"id":"c","qty":1},{"id":"d","qty":2}],"meta":[1,2]}`,
			ignore: []string{"id", "created_at", "items.*.id", "meta"},
		},
		{
			name:   "ignore does not reach other levels",
			a:      `{"id":1,"items":[{"id":"a","sub":{"id":1}}]}`,
			b:      `{"id":1,"items":[{"id":"a","sub":{"id":2}}]}`,
			ignore: []string{"id", "items.*.id"},
			want:   []Difference{{Path: "items.0.sub.id", Left: "1", Right: "2", Kind: DiffChanged}},
		},
		{
			name:   "ignore missing values",
			a:      `{"items":[{"qty":1}]}`,
			b:      `{"items":[{"qty":1,"id":7},{"qty":2}],"etag":"v1"}`,
			ignore: []string{"items.*.id", "items.1", "etag"},
		},
		{
			name:   "wildcard key and numeric index",
			a:      `{"a":{"updated_at":1},"b":{"updated_at":1},"c":[5,6]}`,
			b:      `{"a":{"updated_at":2},"b":{"updated_at":2},"c":[5,7]}`,
			ignore: []string{"*.updated_at", "c.1"},
		},
		{
			name:   "index pattern does not match a leading-zero key",
			a:      `{"c":{"01":1}}`,
			b:      `{"c":{"01":2}}`,
			ignore: []string{"c.1"},
			want:   []Difference{{Path: "c.01", Left: "1", Right: "2", Kind: DiffChanged}},
		},
		{name: "max diffs keeps the first", a: `{"a":1,"b":1,"c":1}`, b: `{"a":2,"b":2,"c":2}`, max: 2, want: []Difference{
			{Path: "a", Left: "1", Right: "2", Kind: DiffChanged},
			{Path: "b", Left: "1", Right: "2", Kind: DiffChanged},
		}},
		{name: "long values are cut", a: `{"s":"` + long + `"}`, b: `{"s":"y"}`, want: []Difference{
			{Path: "s", Left: `"` + strings.Repeat("x", 196) + "...", Right: `"y"`, Kind: DiffChanged},
		}},
		{name: "html is not escaped", a: `{"s":"<a&b>"}`, b: `{"s":"<a>"}`, want: []Difference{
			{Path: "s", Left: `"<a&b>"`, Right: `"<a>"`, Kind: DiffChanged},
		}},
		{name: "escapes are decoded before comparing", a: `{"s":"\u00e9\n"}`, b: `{"s":"é\u000a"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DiffJSON([]byte(tt.a), []byte(tt.b), tt.ignore, tt.max)
			if err != nil {
				t.Fatalf("DiffJSON: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DiffJSON(%s, %s) =\n%+v\nwant\n%+v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

func TestDiffJSONNotJSON(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "   ", "{", `{"a":1} {"b":2}`, "[1,]", "<html></html>", "01", "NaN", `{"a":1}x`} {
		_, err := DiffJSON([]byte(in), []byte(`{}`), nil, 0)
		if !errors.Is(err, ErrNotJSON) {
			t.Errorf("DiffJSON(%q, {}) error = %v, want ErrNotJSON", in, err)
		}
		_, err = DiffJSON([]byte(`{}`), []byte(in), nil, 0)
		if !errors.Is(err, ErrNotJSON) {
			t.Errorf("DiffJSON({}, %q) error = %v, want ErrNotJSON", in, err)
		}
	}
}

func TestValidIgnorePattern(t *testing.T) {
	t.Parallel()
	for p, ok := range map[string]bool{"id": true, "items.*.id": true, "*": true, "a.0": true, "": false, "a..b": false, ".a": false, "a.": false} {
		if err := ValidIgnorePattern(p); (err == nil) != ok {
			t.Errorf("ValidIgnorePattern(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}

func TestNumbersEqual(t *testing.T) {
	t.Parallel()
	nums := []string{"0", "-0", "0.0", "1", "1.0", "10e-1", "0.1e1", "-1", "100", "1e2", "1E+2", "1000e-1",
		"12345678901234567890", "12345678901234567891", "1.2345678901234567890e19", "0.001", "1e-3", "1e-300",
		"123.450", "12345e-2", "9007199254740993", "9007199254740992"}
	for _, a := range nums {
		for _, b := range nums {
			ra, _ := new(big.Rat).SetString(a)
			rb, _ := new(big.Rat).SetString(b)
			if got, want := numbersEqual(a, b), ra.Cmp(rb) == 0; got != want {
				t.Errorf("numbersEqual(%s, %s) = %v, want %v", a, b, got, want)
			}
		}
	}
}

func FuzzDiffJSON(f *testing.F) {
	f.Add([]byte(`{"id":1,"items":[{"id":"a","price":1.0}]}`), []byte(`{"items":[{"price":1,"id":"b"}],"id":2}`), "items.*.id")
	f.Add([]byte(`[1,2,3]`), []byte(`[1,2]`), "")
	f.Add([]byte(`1e99999999999999999999`), []byte(`10e99999999999999999998`), "*")
	f.Add([]byte(`{"a":{"b":null}}`), []byte(`{"a":"x"}`), "a.b")
	f.Add([]byte(`{"a":1,"a":2}`), []byte(`not json`), "a")
	f.Fuzz(func(t *testing.T, a, b []byte, ignore string) {
		patterns := strings.Split(ignore, ",")
		for _, in := range [][]byte{a, b} {
			self, err := DiffJSON(in, in, patterns, 0)
			if valid := json.Valid(in); valid != (err == nil) {
				t.Fatalf("DiffJSON(%q, itself) error = %v, but json.Valid = %v", in, err, valid)
			}
			if len(self) != 0 {
				t.Fatalf("DiffJSON(%q, itself) = %v, want no differences", in, self)
			}
		}
		ab, errAB := DiffJSON(a, b, patterns, 0)
		ba, errBA := DiffJSON(b, a, patterns, 0)
		if (errAB == nil) != (errBA == nil) {
			t.Fatalf("errors not symmetric: %v / %v", errAB, errBA)
		}
		if len(ab) != len(ba) {
			t.Fatalf("DiffJSON(a, b) has %d differences, DiffJSON(b, a) %d", len(ab), len(ba))
		}
		for i, d := range ab {
			if len(d.Left) > diffValueMax || len(d.Right) > diffValueMax {
				t.Fatalf("difference %+v holds more than %d bytes", d, diffValueMax)
			}
			mirror := ba[i]
			if mirror.Path != d.Path || mirror.Left != d.Right || mirror.Right != d.Left || mirror.Kind != swapKind(d.Kind) {
				t.Fatalf("difference %+v mirrors as %+v", d, mirror)
			}
		}
		if errAB == nil && len(ab) > 1 {
			capped, err := DiffJSON(a, b, patterns, 1)
			if err != nil || len(capped) != 1 || capped[0] != ab[0] {
				t.Fatalf("DiffJSON(a, b, max 1) = %v, %v; want the first of %v", capped, err, ab)
			}
		}
	})
}

func swapKind(k string) string {
	switch k {
	case DiffMissingLeft:
		return DiffMissingRight
	case DiffMissingRight:
		return DiffMissingLeft
	}
	return k
}

// benchOrder is an order as the MES answers it, with n items.
func benchOrder(n int, price string) []byte {
	var b strings.Builder
	b.WriteString(`{"id":48213,"client_ref":"acme-2024-00017","tenant":"acme","status":"quoted",` +
		`"created_at":"2024-05-14T09:12:44Z","updated_at":"2024-05-14T09:15:02Z","currency":"EUR",` +
		`"shipping":{"method":"truck","address":{"street":"Industriestr. 4","city":"Stuttgart","zip":"70565","country":"DE"}},"items":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"it-%d","sku":"FLANGE-%03d","material":"AlMg3","quantity":%d,"unit_price":%s,`+
			`"dimensions":{"x":120.5,"y":80,"z":12.25},"finish":"anodized","lead_time_days":21}`, i, i, i+1, price)
	}
	b.WriteString(`],"total":1234.50,"notes":null}`)
	return []byte(b.String())
}

func BenchmarkDiffJSON(b *testing.B) {
	primary := benchOrder(50, "12.40")
	candidate := benchOrder(50, "12.4")
	candidate = []byte(strings.Replace(string(candidate), `"total":1234.50`, `"total":1234.55`, 1))
	ignore := []string{"id", "created_at", "updated_at", "items.*.id"}
	b.SetBytes(int64(len(primary) + len(candidate)))
	b.ReportAllocs()
	for b.Loop() {
		diffs, err := DiffJSON(primary, candidate, ignore, 20)
		if err != nil || len(diffs) != 1 {
			b.Fatalf("DiffJSON = %v, %v; want one difference", diffs, err)
		}
	}
}

func ExampleDiffJSON() {
	legacy := []byte(`{"id": 17, "total": 12.50, "items": [{"id": "a1", "price": 12.5, "qty": 1}]}`)
	candidate := []byte(`{"id": 99, "total": 12.5, "items": [{"id": "x9", "price": 12.0, "qty": 1}], "tax": 2.37}`)
	diffs, err := DiffJSON(legacy, candidate, []string{"id", "items.*.id"}, 10)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, d := range diffs {
		fmt.Printf("%s %s: %s -> %s\n", d.Kind, d.Path, d.Left, d.Right)
	}
	// Output:
	// changed items.0.price: 12.5 -> 12.0
	// missing_left tax:  -> 2.37
}
