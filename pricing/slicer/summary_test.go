package slicer

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// realTail is the end of a G-code PrusaSlicer 2.5 wrote for
// /usr/share/PrusaSlicer/shapes/box.stl with the default profile.
const realTail = `M107
M84
; Filament-specific end gcode 
;END gcode for filament

; filament used [mm] = 2178.96
; filament used [cm3] = 5.24
; filament used [g] = 6.50
; total filament used [g] = 6.50
; total filament cost = 0.00
; estimated printing time (normal mode) = 38m 15s
; estimated printing time (silent mode) = 38m 15s

; prusaslicer_config = begin
; avoid_crossing_perimeters = 0
; bed_shape = 0x0,250x0,250x210,0x210
; prusaslicer_config = end
`

func TestParseSummary(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		in    string
		want  Summary
		error string
	}{
		{"real", realTail, Summary{38*time.Minute + 15*time.Second, 6.50}, ""},
		{"days", "; filament used [g] = 1234.5\n; estimated printing time (normal mode) = 1d 2h 3m 4s\n",
			Summary{26*time.Hour + 3*time.Minute + 4*time.Second, 1234.5}, ""},
		{"two extruders", "; filament used [g] = 1.25, 2.5\r\n; estimated printing time (normal mode) = 4s\r\n",
			Summary{4 * time.Second, 3.75}, ""},
		{"no density", "; total filament used [g] = 0.00\n; estimated printing time (normal mode) = 4s\n", Summary{}, "is the filament density set"},
		{"no time", "; filament used [g] = 1\n", Summary{}, "no \"estimated printing time"},
		{"empty", "", Summary{}, "no \"estimated"},
		{"bad time", "; filament used [g] = 1\n; estimated printing time (normal mode) = soon\n", Summary{}, "print time"},
		{"negative grams", "; filament used [g] = -1\n; estimated printing time (normal mode) = 1s\n", Summary{}, "not a mass"},
		{"nan grams", "; filament used [g] = NaN\n; estimated printing time (normal mode) = 1s\n", Summary{}, "not a mass"},
		{"huge time", "; filament used [g] = 1\n; estimated printing time (normal mode) = 99999999d\n", Summary{}, "print time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSummary([]byte(tc.in))
			if tc.error != "" {
				if !errors.Is(err, ErrNoSummary) || !strings.Contains(err.Error(), tc.error) {
					t.Fatalf("err = %v, want ErrNoSummary containing %q", err, tc.error)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	good := map[string]time.Duration{
		"4s":          4 * time.Second,
		"38m 15s":     38*time.Minute + 15*time.Second,
		"2h 0m 1s":    2*time.Hour + time.Second,
		"1d 2h 3m 4s": 26*time.Hour + 3*time.Minute + 4*time.Second,
		"3d 5s":       72*time.Hour + 5*time.Second,
		" 7m  ":       7 * time.Minute,
	}
	for in, want := range good {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "s", "4", "4x", "1s 2m", "1m 1m", "-1s", "1.5s", "1d 2h 3m 4s 5s", "400d", "18446744073709551615s", "+3s"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
}

func FuzzParseSummary(f *testing.F) {
	f.Add([]byte(realTail))
	f.Add([]byte("; filament used [g] = 1.25, 2.5\n; estimated printing time (normal mode) = 1d 2h 3m 4s\n"))
	f.Add([]byte("; filament used [g] = \n; estimated printing time (normal mode) = 99999999999d\n"))
	f.Add([]byte("; estimated printing time (normal mode) = 1h 1h\r\n; filament used [g] = 1e308, 1e308\n"))
	f.Add([]byte(realTail[:100]))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSummary(b)
		if err != nil {
			if !errors.Is(err, ErrNoSummary) {
				t.Fatalf("error %v is not ErrNoSummary", err)
			}
			return
		}
		if s.PrintTime < 0 || s.PrintTime > maxPrintTime || !(s.FilamentGrams >= 0) {
			t.Fatalf("insane summary %+v", s)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"1d 2h 3m 4s", "38m 15s", "4s", "", "1s 2m", "9999999d", "0s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err == nil && (d < 0 || d > maxPrintTime) {
			t.Fatalf("ParseDuration(%q) = %v", s, d)
		}
	})
}
