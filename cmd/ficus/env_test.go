package main

import (
	"errors"
	"strings"
	"testing"
)

func TestConfigErrorNamesFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{`crm: invalid config: Mode "pol": want "poll" or "webhook"`, `crm: invalid config: --mode "pol": want "poll" or "webhook"`},
		{`Interval -1s; ModeX stays; Mode.`, `--interval -1s; ModeX stays; --mode.`},
		{`HeartbeatTimeout (1s) must be at least twice HeartbeatInterval (5s)`, `--heartbeat-timeout (1s) must be at least twice HeartbeatInterval (5s)`},
	} {
		err := configError(errors.New(tc.in), map[string]string{"Mode": "--mode", "Interval": "--interval", "HeartbeatTimeout": "--heartbeat-timeout"})
		var usage usageError
		if !errors.As(err, &usage) || err.Error() != tc.want {
			t.Errorf("%q: %q, want %q (a usage error)", tc.in, err, tc.want)
		}
	}
}

// replaceWord never panics, and what it leaves of word stands inside a
// longer identifier.
func FuzzReplaceWord(f *testing.F) {
	for _, s := range []string{`Mode "pol"`, "ModeMode Mode", "", "Mode", "xMode-Mode_Mode", "ü Mode ü"} {
		f.Add(s, "Mode")
	}
	f.Fuzz(func(t *testing.T, s, word string) {
		if word == "" || strings.Contains(word, "@") {
			return
		}
		got := replaceWord(s, word, "@")
		if strings.Count(got, "@") < strings.Count(s, "@") {
			t.Fatalf("%q: lost text: %q", s, got)
		}
		if !strings.Contains(s, word) && got != s {
			t.Fatalf("%q without %q changed to %q", s, word, got)
		}
	})
}
