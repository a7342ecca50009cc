package main

import "testing"

func TestPlanGC(t *testing.T) {
	t.Parallel()
	env := func(vars ...string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			for _, v := range vars {
				if v == k {
					return "1", true
				}
			}
			return "", false
		}
	}
	const gib = int64(1) << 30
	for _, tt := range []struct {
		name      string
		percent   int
		limitMiB  int
		env       func(string) (string, bool)
		available int64
		want      gcPlan
	}{
		{"defaults: three quarters of available", 400, 0, env(), 8 * gib, gcPlan{percent: 400, limit: 6 * gib}},
		{"the limit flag wins over available", 400, 512, env(), 8 * gib, gcPlan{percent: 400, limit: 512 << 20}},
		{"GOGC set: leave it", 400, 512, env("GOGC"), 8 * gib, gcPlan{}},
		{"GOMEMLIMIT set: the user's limit stands", 400, 512, env("GOMEMLIMIT"), 8 * gib, gcPlan{percent: 400}},
		{"no limit known: leave GOGC", 400, 0, env(), 0, gcPlan{}},
		{"percent 0 keeps the default", 0, 512, env(), 8 * gib, gcPlan{}},
	} {
		if got := planGC(tt.percent, tt.limitMiB, tt.env, tt.available); got != tt.want {
			t.Errorf("%s: planGC = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestParseCgroupLimit(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"max\n", 0, false},
		{"1073741824\n", 1 << 30, true},
		{"", 0, false},
		{"-1", 0, false},
	} {
		if got, ok := parseCgroupLimit(tt.in); got != tt.want || ok != tt.ok {
			t.Errorf("parseCgroupLimit(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseCgroupLimit(f *testing.F) {
	f.Add("max\n")
	f.Add("1073741824\n")
	f.Fuzz(func(t *testing.T, s string) {
		if n, ok := parseCgroupLimit(s); ok && n <= 0 {
			t.Fatalf("parseCgroupLimit(%q) = %d, true: a limit must be positive", s, n)
		}
	})
}
