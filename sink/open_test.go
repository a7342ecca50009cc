package sink

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/sink/nats"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want target
	}{
		{"jsonl:///var/lib/ficus/events.jsonl", target{kind: kindJSONL, path: "/var/lib/ficus/events.jsonl"}},
		{"jsonl:/tmp/e.jsonl", target{kind: kindJSONL, path: "/tmp/e.jsonl"}},
		{"jsonl:events.jsonl", target{kind: kindJSONL, path: "events.jsonl"}},
		{"jsonl:out/my%20events.jsonl", target{kind: kindJSONL, path: "out/my events.jsonl"}},
		{"jsonl:-", target{kind: kindJSONL, path: "-"}},
		{"JSONL:-", target{kind: kindJSONL, path: "-"}},
		{"http://crm:8080/events", target{kind: kindWebhook, url: "http://crm:8080/events"}},
		{"https://user:pw@crm.example/events?tenant=a", target{kind: kindWebhook, url: "https://user:pw@crm.example/events?tenant=a"}},
		{"nats://127.0.0.1:4222", target{kind: kindNATS, url: "nats://127.0.0.1:4222"}},
		{"nats://127.0.0.1:4222/", target{kind: kindNATS, url: "nats://127.0.0.1:4222"}},
		{"nats://nats:4222/cdc?stream=SHOP", target{kind: kindNATS, url: "nats://nats:4222", prefix: "cdc", stream: "SHOP"}},
		{"nats://u:p@nats/ficus.cdc?create=false&duplicate_window=1h", target{
			kind: kindNATS, url: "nats://u:p@nats", prefix: "ficus.cdc", noCreate: true, duplicateWindow: time.Hour}},
		{"null:", target{kind: kindNull}},
		{"null://", target{kind: kindNull}},
	}
	for _, tt := range tests {
		got, err := parseURL(tt.in)
		if err != nil {
			t.Errorf("parseURL(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("parseURL(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, mention string }{
		{"", "empty"},
		{"   ", "empty"},
		{"/var/lib/events.jsonl", "no scheme"},
		{"kafka://broker:9092/topic", `unknown scheme "kafka"`},
		{"jsonl:", "no file path"},
		{"jsonl://events.jsonl", "three slashes"},
		{"jsonl:///", "no file path"},
		{"jsonl:///tmp/e.jsonl?sync=false", "no query"},
		{"http:///events", "no host"},
		{"https://crm/events#top", "fragment"},
		{"nats:cdc", "no host"},
		{"nats://nats:4222/a/b", "subject prefix"},
		{"nats://nats:4222/cdc.*", "subject prefix"},
		{"nats://nats:4222/cdc?stream=A.B", "stream"},
		{"nats://nats:4222/cdc?create=maybe", "create"},
		{"nats://nats:4222/cdc?duplicate_window=-1m", "duplicate_window"},
		{"nats://nats:4222/cdc?duplicate_window=ten", "duplicate_window"},
		{"nats://nats:4222/cdc?strem=CDC", `unknown nats URL query parameter "strem"`},
		{"nats://nats:4222/cdc?stream=A&stream=B", "2 times"},
		{"null:x", "nothing after"},
		{"http://user:s3cret@[::1", "not a URL"},
	}
	for _, tt := range tests {
		_, err := parseURL(tt.in)
		if !errors.Is(err, ErrInvalidURL) {
			t.Errorf("parseURL(%q) = %v, want ErrInvalidURL", tt.in, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("parseURL(%q) = %q, want it to mention %q", tt.in, err, tt.mention)
		}
		if !strings.Contains(err.Error(), "accepted forms") {
			t.Errorf("parseURL(%q) = %q, want the accepted forms listed", tt.in, err)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("parseURL(%q) error leaks the password: %q", tt.in, err)
		}
	}
}

// FuzzOpenURL parses sink URLs as Open does, without opening anything.
func FuzzOpenURL(f *testing.F) {
	for _, s := range []string{
		"jsonl:///var/lib/ficus/events.jsonl", "jsonl:-", "jsonl:e.jsonl", "http://crm:8080/events",
		"https://u:p@h/x?y=1", "nats://127.0.0.1:4222/cdc?stream=CDC&create=false&duplicate_window=5m",
		"null:", "nats://h/a.b.c", "jsonl://x", "", "::", "nats://[::1]:4222/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		tg, err := parseURL(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidURL) {
				t.Fatalf("parseURL(%q) error %v does not wrap ErrInvalidURL", raw, err)
			}
			return
		}
		switch tg.kind {
		case kindJSONL:
			if tg.path == "" {
				t.Fatalf("parseURL(%q): jsonl without a path", raw)
			}
		case kindWebhook:
			u, err := url.Parse(tg.url)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				t.Fatalf("parseURL(%q): webhook URL %q is not http(s)://host", raw, tg.url)
			}
		case kindNATS:
			if u, err := url.Parse(tg.url); err != nil || u.Scheme != "nats" || u.Host == "" {
				t.Fatalf("parseURL(%q): server URL %q is not nats://host", raw, tg.url)
			}
			if tg.prefix != "" && nats.CheckSubjectPrefix(tg.prefix) != nil {
				t.Fatalf("parseURL(%q): invalid prefix %q accepted", raw, tg.prefix)
			}
			if tg.stream != "" && nats.CheckStream(tg.stream) != nil {
				t.Fatalf("parseURL(%q): invalid stream %q accepted", raw, tg.stream)
			}
			if tg.duplicateWindow < 0 {
				t.Fatalf("parseURL(%q): negative duplicate window", raw)
			}
		case kindNull:
		default:
			t.Fatalf("parseURL(%q): unknown kind %q", raw, tg.kind)
		}
	})
}
