package proxy

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/proxy/intake"
)

func TestAsyncRouteConfig(t *testing.T) {
	t.Parallel()
	const ok = "routes:\n  - {name: o, mode: async, match: {methods: [POST, PUT], path: /o}}\n"
	cfg, err := ParseConfig([]byte(ok), testUpstream)
	if err != nil || cfg.Routes[0].Mode != modeAsync {
		t.Fatalf("ParseConfig: %v, %+v", err, cfg)
	}
	for _, tt := range []struct{ name, yaml, want string }{
		{"unknown mode", "routes:\n  - {name: o, mode: later, match: {methods: [POST], path: /o}}\n", `routes[0].mode: "later" is not a route mode; use sync or async`},
		{"no methods", "routes:\n  - {name: o, mode: async, match: {path: /o}}\n", "routes[0].match.methods: must be listed on an async route"},
		{"a read", "routes:\n  - {name: o, mode: async, match: {methods: [POST, GET], path: /o}}\n", "routes[0].match.methods[1]: GET cannot be async"},
		{"wait", "routes:\n  - {name: o, mode: async, match: {methods: [POST], path: /o}, idempotency: {in_flight: wait}}\n", "routes[0].idempotency.in_flight: has no effect on an async route"},
		{"split", "upstreams: {n: {url: 'http://127.0.0.1:2'}}\nroutes:\n  - {name: o, mode: async, match: {methods: [POST], path: /o}, split: {new: n}}\n",
			"routes[0].mode: async does not go with split or shadow"},
	} {
		_, err := ParseConfig([]byte(tt.yaml), testUpstream)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestAsyncRouteTimeoutWithinTheLease(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig([]byte("upstreams: {default: {url: 'http://127.0.0.1:2', timeout: 5m}}\nroutes:\n  - {name: o, mode: async, match: {methods: [POST], path: /o}}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{intake: nil}
	if err := p.checkIntake(cfg); err == nil || !strings.Contains(err.Error(), "--database-url") {
		t.Fatalf("without an intake: %v", err)
	}
	p = &Proxy{intake: new(intake.Store), intakeLease: 2 * time.Minute}
	if err := p.checkIntake(cfg); err == nil || !strings.Contains(err.Error(), "shorter than the intake's lease") {
		t.Fatalf("a 5m timeout with a 2m lease: %v", err)
	}
}

// Whatever an upstream answers, the status document encodes, and carries
// the body back: as JSON when it is JSON, else as text.
func FuzzIntakeStatusDocument(f *testing.F) {
	for _, s := range []string{`{"id":1}`, ` [1, 2] `, `not json`, "", "\xff\xfe", `{"a":`, `"x"`, "1e999", `{"a":"\ud800"}`} {
		f.Add([]byte(s), 201)
	}
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		rec := &intake.Record{State: intake.StateDelivered, Answer: &intake.Answer{Status: status, Body: body}}
		b, err := json.Marshal(intakeStatus(rec))
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		var back IntakeStatus
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if back.Response == nil || back.Response.Status != status {
			t.Fatalf("lost the answer: %s", b)
		}
		if !json.Valid(body) && back.Response.BodyText != string([]rune(string(body))) {
			t.Fatalf("text body %q came back as %q", body, back.Response.BodyText)
		}
	})
}
