package orders

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The documented example file is the default configuration, apart from
// its drift grace.
func TestExampleConfigFileIsTheDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig("testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Config{DriftGrace: 10 * time.Minute}.withDefaults()
	got, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("example file = %+v\nwant %+v", got, want)
	}
}

func TestParseConfig(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig([]byte("drift_grace: 90s\nstatus_limits:\n  mes: {scheduled: 36h, printing: 2d}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DriftGrace != 90*time.Second || cfg.Sources != nil ||
		!reflect.DeepEqual(cfg.StatusLimits, map[string]map[string]time.Duration{"mes": {"scheduled": 36 * time.Hour, "printing": 48 * time.Hour}}) {
		t.Errorf("config = %+v", cfg)
	}
	if cfg, err := ParseConfig(nil); err != nil || !reflect.DeepEqual(cfg, Config{}) {
		t.Errorf("empty file = %+v, %v; want the zero Config (every default)", cfg, err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"drift_grace: 5", `line 1: "5" is not a duration`},
		{"drift_grace: -5m", `line 1: "-5m": a duration must be positive`},
		{"drift_grace: [1]", "line 1: want a duration"},
		{"status_limits:\n  mes: {new: 0d}", `line 2: "0d": want whole days`},
		{"status_limits:\n  mes: {new: 99999999999d}", "want whole days"},
		{"drift_graze: 5m", "line 1: field drift_graze not found"},
		{"sources:\n  - name: shop\n    tabel: shop.orders", "line 3: field tabel not found"},
		{"sources: []", "sources is empty"},
		{"status_limits:\n  crm: {new: 1d}", `status limits for unknown source "crm"`},
		{"reference: mes\nmirror: mes", `Reference "mes" and Mirror "mes" must be two different sources`},
		{"sources:\n  - {name: shop, table: orders}\n  - {name: mes, table: mes.orders}", "schema-qualified table"},
		{"sources:\n  - {name: shop, table: shop.orders}\n  - {name: shop, table: mes.orders}", "appears twice"},
		{"drift_grace: 5m\n---\ndrift_grace: 6m", "more than one YAML document"},
		{"drift_grace: 5m\n  x: [", "line 2"},
	} {
		_, err := ParseConfig([]byte(tc.yaml))
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want ErrInvalidConfig saying %q", tc.yaml, err, tc.want)
		}
	}
	if _, err := LoadConfig("testdata/no-such-file.yaml"); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("missing file: %v", err)
	}
}

// Config files come from operators: ParseConfig returns a valid Config or
// an ErrInvalidConfig, never panics, and reads no more than its bound.
func FuzzParseConfig(f *testing.F) {
	example, err := os.ReadFile("testdata/config.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{string(example), "", "drift_grace: 5m", "status_limits: {mes: {new: 3d}}", "sources: [{name: a, table: b.c}]",
		"&a [*a, *a]", "drift_grace: 1e400h", "status_limits: {shop: {new: 9223372036854775807ns}}", "- - - -", "{", "reference: shop\nmirror: shop"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseConfig(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
			return
		}
		if _, err := cfg.withDefaults(); err != nil {
			t.Fatalf("ParseConfig accepted a config withDefaults refuses: %v", err)
		}
	})
}
