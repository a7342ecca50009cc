package slicer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrNoSummary: the G-code does not end with PrusaSlicer's summary, or
// the summary is broken.
var ErrNoSummary = errors.New("no slicer summary in g-code")

// Summary is what PrusaSlicer writes about a print at the end of its
// G-code.
type Summary struct {
	// PrintTime is "; estimated printing time (normal mode)".
	PrintTime time.Duration
	// FilamentGrams is "; filament used [g]" (the sum over extruders).
	FilamentGrams float64
}

// maxPrintTime bounds a believable estimate: a year of printing.
const maxPrintTime = 365 * 24 * time.Hour

// ParseSummary reads the summary from the tail of a G-code file
// written by PrusaSlicer:
//
//	; filament used [g] = 6.50
//	; estimated printing time (normal mode) = 1d 2h 3m 4s
//
// Both lines are required. With several extruders, "filament used [g]"
// lists one value per extruder, separated by commas; they are added.
func ParseSummary(tail []byte) (Summary, error) {
	var (
		s               Summary
		gotTime, gotMas bool
	)
	sc := bufio.NewScanner(bytes.NewReader(tail))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	sc.Split(scanLinesLenient)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "; ") {
			continue
		}
		key, val, ok := strings.Cut(line[2:], " = ")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "estimated printing time (normal mode)":
			d, err := ParseDuration(val)
			if err != nil {
				return Summary{}, fmt.Errorf("%w: print time: %v", ErrNoSummary, err)
			}
			s.PrintTime, gotTime = d, true
		case "filament used [g]":
			g, err := parseGrams(val)
			if err != nil {
				return Summary{}, fmt.Errorf("%w: filament used: %v", ErrNoSummary, err)
			}
			s.FilamentGrams, gotMas = g, true
		}
	}
	switch {
	case !gotTime:
		return Summary{}, fmt.Errorf("%w: no %q line", ErrNoSummary, "estimated printing time (normal mode)")
	case !gotMas:
		return Summary{}, fmt.Errorf("%w: no %q line (is the filament density set?)", ErrNoSummary, "filament used [g]")
	}
	return s, nil
}

// scanLinesLenient splits on '\n' like bufio.ScanLines, and gives up on
// a line longer than the buffer by skipping it instead of failing.
func scanLinesLenient(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, bytes.TrimSuffix(data[:i], []byte{'\r'}), nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	if len(data) >= 1<<20-1 { // a line longer than the buffer: skip what is there
		return len(data), []byte{}, nil
	}
	return 0, nil, nil
}

func parseGrams(val string) (float64, error) {
	var sum float64
	for _, f := range strings.Split(val, ",") {
		g, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", val)
		}
		if math.IsNaN(g) || math.IsInf(g, 0) || g < 0 || g > 1e9 {
			return 0, fmt.Errorf("%q is not a mass in grams", val)
		}
		sum += g
	}
	return sum, nil
}

// ParseDuration parses PrusaSlicer's time format: "1d 2h 3m 4s", any of
// the parts left out ("38m 15s", "4s"), each part at most once and in
// that order.
func ParseDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix byte
		d      time.Duration
	}{{'d', 24 * time.Hour}, {'h', time.Hour}, {'m', time.Minute}, {'s', time.Second}}
	fields := strings.Fields(s)
	if len(fields) == 0 || len(fields) > len(units) {
		return 0, fmt.Errorf("duration %q: want e.g. \"1d 2h 3m 4s\"", s)
	}
	var total time.Duration
	next := 0
	for _, f := range fields {
		if len(f) < 2 || len(f) > 8 {
			return 0, fmt.Errorf("duration %q: bad part %q", s, f)
		}
		u := next
		for u < len(units) && units[u].suffix != f[len(f)-1] {
			u++
		}
		if u == len(units) {
			return 0, fmt.Errorf("duration %q: bad or out-of-order unit in %q", s, f)
		}
		n, err := strconv.ParseUint(f[:len(f)-1], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("duration %q: bad number in %q", s, f)
		}
		if n > uint64(maxPrintTime/units[u].d) {
			return 0, fmt.Errorf("duration %q: longer than %v", s, maxPrintTime)
		}
		total += time.Duration(n) * units[u].d
		if total > maxPrintTime {
			return 0, fmt.Errorf("duration %q: longer than %v", s, maxPrintTime)
		}
		next = u + 1
	}
	return total, nil
}
