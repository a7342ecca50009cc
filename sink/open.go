package sink

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ficuslabs/ficus/sink/jsonl"
	"github.com/ficuslabs/ficus/sink/nats"
	"github.com/ficuslabs/ficus/sink/webhook"
)

// urlForms lists the accepted sink URLs for error messages.
const urlForms = "jsonl:///absolute/path.jsonl, jsonl:relative/path.jsonl, jsonl:- (standard output), " +
	"http://host/path or https://host/path (webhook), nats://host:4222/PREFIX?stream=NAME, null: (discard)"

// Kinds of sink, as in the sink label of the metrics.
const (
	kindJSONL   = "jsonl"
	kindWebhook = "webhook"
	kindNATS    = "nats"
	kindNull    = "null"
)

// Query parameters of a nats URL.
const (
	natsParamStream          = "stream"
	natsParamCreate          = "create"
	natsParamDuplicateWindow = "duplicate_window"
)

// target is a parsed sink URL: what Open builds, before any I/O.
type target struct {
	kind string
	// path is the jsonl file, or jsonl.Stdout.
	path string
	// url is the webhook endpoint, or the NATS server URL.
	url string
	// prefix, stream, noCreate and duplicateWindow configure nats; zero
	// values take the adapter's defaults.
	prefix, stream  string
	noCreate        bool
	duplicateWindow time.Duration
}

// Open builds a sink from a URL (the forms are listed in the package
// documentation). A jsonl sink opens its file, a nats sink connects and
// makes sure its stream exists, a webhook sink contacts nothing until Send.
// A URL Open cannot read gives an error wrapping ErrInvalidURL.
func Open(ctx context.Context, rawURL string, opts Options) (Sink, error) {
	t, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	switch t.kind {
	case kindJSONL:
		s, err := jsonl.New(jsonl.Config{Path: t.path, Metrics: opts.Metrics, Logger: opts.Logger})
		if err != nil {
			return nil, err
		}
		return s, nil
	case kindWebhook:
		cfg := webhook.Config{URL: t.url, Metrics: opts.Metrics, Logger: opts.Logger, TLSClientConfig: opts.TLSClientConfig}
		if opts.DeadLetter != nil {
			cfg.DeadLetter = opts.DeadLetter
		}
		s, err := webhook.New(cfg)
		if err != nil {
			return nil, err
		}
		return s, nil
	case kindNATS:
		s, err := nats.New(ctx, nats.Config{
			URL: t.url, SubjectPrefix: t.prefix, Stream: t.stream,
			NoCreateStream: t.noCreate, DuplicateWindow: t.duplicateWindow,
			Metrics: opts.Metrics, Logger: opts.Logger, TLSClientConfig: opts.TLSClientConfig,
		})
		if err != nil {
			return nil, err
		}
		return s, nil
	default: // kindNull; parseURL returns no other
		return NewDiscard(opts.Metrics), nil
	}
}

// parseURL reads a sink URL without opening anything.
func parseURL(rawURL string) (target, error) {
	bad := func(format string, args ...any) (target, error) {
		return target{}, fmt.Errorf("%w: %s; accepted forms: %s", ErrInvalidURL, fmt.Sprintf(format, args...), urlForms)
	}
	if strings.TrimSpace(rawURL) == "" {
		return bad("the URL is empty")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the URL, which may hold a password
		}
		return bad("not a URL: %v", err)
	}
	if u.Scheme == "" {
		return bad("no scheme (such as jsonl:, https: or nats:)")
	}
	switch u.Scheme {
	case "jsonl":
		return parseJSONL(u, bad)
	case "http", "https":
		if u.Host == "" {
			return bad("webhook URL %q has no host", u.Redacted())
		}
		if u.Fragment != "" {
			return bad("webhook URL %q has a fragment (#...), which is never sent", u.Redacted())
		}
		return target{kind: kindWebhook, url: u.String()}, nil
	case "nats":
		return parseNATS(u, bad)
	case "null":
		if u.Opaque != "" || u.Host != "" || u.Path != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return bad("null: takes nothing after the colon")
		}
		return target{kind: kindNull}, nil
	}
	return bad("unknown scheme %q", u.Scheme)
}

func parseJSONL(u *url.URL, bad func(string, ...any) (target, error)) (target, error) {
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return bad("a jsonl URL takes no query or fragment")
	}
	if u.Opaque != "" {
		p, err := url.PathUnescape(u.Opaque)
		if err != nil {
			return bad("jsonl path: %v", err)
		}
		return target{kind: kindJSONL, path: p}, nil
	}
	if u.User != nil || u.Host != "" {
		return bad("jsonl URL has a host %q: write jsonl:///absolute/path (three slashes) or jsonl:relative/path", u.Host)
	}
	if u.Path == "" || u.Path == "/" {
		return bad("jsonl URL has no file path")
	}
	return target{kind: kindJSONL, path: u.Path}, nil
}

func parseNATS(u *url.URL, bad func(string, ...any) (target, error)) (target, error) {
	if u.Opaque != "" || u.Host == "" {
		return bad("nats URL %q has no host: write nats://host:4222/PREFIX", u.Redacted())
	}
	if u.Fragment != "" {
		return bad("nats URL has a fragment (#...)")
	}
	t := target{kind: kindNATS, url: (&url.URL{Scheme: "nats", User: u.User, Host: u.Host}).String()}
	t.prefix = strings.TrimPrefix(u.Path, "/")
	if t.prefix != "" {
		if err := nats.CheckSubjectPrefix(t.prefix); err != nil || strings.Contains(t.prefix, "/") {
			return bad("nats subject prefix %q (the URL path): want dot-separated tokens such as cdc or ficus.cdc, without / * > or whitespace", t.prefix)
		}
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("nats URL query: %v", err)
	}
	for _, name := range slices.Sorted(maps.Keys(q)) {
		values := q[name]
		if len(values) != 1 {
			return bad("nats URL query parameter %q is given %d times", name, len(values))
		}
		v := values[0]
		switch name {
		case natsParamStream:
			if err := nats.CheckStream(v); err != nil {
				return bad("nats stream %q: want letters, digits, _ or -", v)
			}
			t.stream = v
		case natsParamCreate:
			create, err := strconv.ParseBool(v)
			if err != nil {
				return bad("nats create=%q: want true or false", v)
			}
			t.noCreate = !create
		case natsParamDuplicateWindow:
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return bad("nats duplicate_window=%q: want a positive duration such as 10m", v)
			}
			t.duplicateWindow = d
		default:
			return bad("unknown nats URL query parameter %q (known: %s, %s, %s)", name,
				natsParamStream, natsParamCreate, natsParamDuplicateWindow)
		}
	}
	return t, nil
}
