package main

import (
	"os"
	"strings"
	"testing"
)

func TestSumMetric(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		text  string
		want  float64
		found bool
		bad   bool
	}{
		{"absent", "ficus_cdc_transactions_total 3\n", 0, false, false},
		{"one series", "ficus_cdc_events_total{table=\"a\",op=\"insert\"} 7\n", 7, true, false},
		{"several series", "ficus_cdc_events_total{table=\"a\",op=\"insert\"} 7\n" +
			"ficus_cdc_events_total{table=\"b\",op=\"update\"} 3\n", 10, true, false},
		{"no labels", "ficus_cdc_events_total 4\n", 4, true, false},
		{"a longer name is another metric", "ficus_cdc_events_total_x 9\nficus_cdc_events_totalx{a=\"b\"} 9\n", 0, false, false},
		{"labels with braces in values", "ficus_cdc_events_total{table=\"a}b\",op=\"x\"} 2\n", 2, true, false},
		{"with a timestamp", "ficus_cdc_events_total{op=\"x\"} 2 1700000000000\n", 2, true, false},
		{"comments and others", "# HELP x\n# TYPE ficus_cdc_events_total counter\nother 1\n", 0, false, false},
		{"no value", "ficus_cdc_events_total{op=\"x\"}\n", 0, false, true},
		{"bad value", "ficus_cdc_events_total{op=\"x\"} many\n", 0, false, true},
		{"unterminated labels", "ficus_cdc_events_total{op=\"x\" 1\n", 0, false, true},
	}
	for _, tt := range tests {
		got, found, err := sumMetric(strings.NewReader(tt.text), deliveredMetric)
		if (err != nil) != tt.bad || got != tt.want || found != tt.found {
			t.Errorf("%s: sumMetric = %v, %v, %v; want %v, %v, error %v", tt.name, got, found, err, tt.want, tt.found, tt.bad)
		}
	}
}

func FuzzSumMetric(f *testing.F) {
	f.Add("ficus_cdc_events_total{table=\"a\",op=\"insert\"} 7\nficus_cdc_events_total 3\n")
	f.Add("ficus_cdc_events_total{ 1")
	f.Fuzz(func(t *testing.T, text string) {
		sum, found, err := sumMetric(strings.NewReader(text), deliveredMetric)
		if err == nil && !found && sum != 0 {
			t.Fatalf("sumMetric = %v without finding a series", sum)
		}
	})
}

func TestParseVmHWM(t *testing.T) {
	t.Parallel()
	status := "Name:\tficus\nVmPeak:\t  900 kB\nVmHWM:\t   83456 kB\nVmRSS:\t 1000 kB\n"
	if kb, err := parseVmHWM(strings.NewReader(status)); err != nil || kb != 83456 {
		t.Errorf("parseVmHWM = %d, %v; want 83456", kb, err)
	}
	for _, bad := range []string{"Name:\tx\n", "VmHWM:\t12 MB\n", "VmHWM:\tmany kB\n"} {
		if _, err := parseVmHWM(strings.NewReader(bad)); err == nil {
			t.Errorf("parseVmHWM(%q) gave no error", bad)
		}
	}
}

func TestPeakRSSOfThisProcess(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	if kb, err := peakRSS(os.Getpid()); err != nil || kb <= 0 {
		t.Errorf("peakRSS = %d, %v", kb, err)
	}
}
