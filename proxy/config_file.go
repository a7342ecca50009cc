package proxy

import (
	"encoding/hex"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The config file's shape, decoded by yaml.v3 with KnownFields(true):
// yaml.v3 checks keys, mappings, lists, anchors and merge keys; the
// scalars are checked here, so that a problem names its path as well as
// its line. fileConfig.convert turns the file into a Config with every
// default filled in.

type fileConfig struct {
	BodyLimit            scalar[byteSize]        `yaml:"body_limit"`
	UnderscoresInHeaders scalar[bool]            `yaml:"underscores_in_headers"`
	Upstreams            map[string]fileUpstream `yaml:"upstreams"`
	Tenants              []fileTenant            `yaml:"tenants"`
	Anonymous            fileAnonymous           `yaml:"anonymous"`
	RateLimits           []fileRateLimit         `yaml:"rate_limits"`
	Idempotency          fileIdempotency         `yaml:"idempotency"`
	Routes               []fileRoute             `yaml:"routes"`
}

type fileUpstream struct {
	URL                    scalar[*url.URL]           `yaml:"url"`
	Timeout                scalar[time.Duration]      `yaml:"timeout"`
	MaxIdleConnsPerHost    scalar[int64]              `yaml:"max_idle_conns_per_host"`
	MaxInFlight            scalar[int64]              `yaml:"max_in_flight"`
	MaxResponseHeaderBytes scalar[byteSize]           `yaml:"max_response_header_bytes"`
	LaneShare              map[string]scalar[float64] `yaml:"lane_share"`
	Breaker                fileBreaker                `yaml:"breaker"`
}

type fileBreaker struct {
	Disabled            scalar[bool]          `yaml:"disabled"`
	ConsecutiveFailures scalar[int64]         `yaml:"consecutive_failures"`
	FailureRatio        scalar[float64]       `yaml:"failure_ratio"`
	MinRequests         scalar[int64]         `yaml:"min_requests"`
	Interval            scalar[time.Duration] `yaml:"interval"`
	OpenFor             scalar[time.Duration] `yaml:"open_for"`
	HalfOpenProbes      scalar[int64]         `yaml:"half_open_probes"`
	SlowCall            scalar[time.Duration] `yaml:"slow_call"`
}

type fileTenant struct {
	Name    scalar[string]    `yaml:"name"`
	Lane    scalar[string]    `yaml:"lane"`
	APIKeys []scalar[keyHash] `yaml:"api_keys"`
}

type fileAnonymous struct {
	Tenant scalar[string] `yaml:"tenant"`
	Lane   scalar[string] `yaml:"lane"`
}

type fileRateLimit struct {
	Name   scalar[string]  `yaml:"name"`
	Lane   scalar[string]  `yaml:"lane"`
	Tenant scalar[string]  `yaml:"tenant"`
	Per    scalar[string]  `yaml:"per"`
	Rate   scalar[float64] `yaml:"rate"`
	Burst  scalar[int64]   `yaml:"burst"`
	DryRun scalar[bool]    `yaml:"dry_run"`
}

type fileIdempotency struct {
	Store         scalar[string]        `yaml:"store"`
	TTL           scalar[time.Duration] `yaml:"ttl"`
	LockTTL       scalar[time.Duration] `yaml:"lock_ttl"`
	MaxBody       scalar[byteSize]      `yaml:"max_body"`
	ReplayHeaders []scalar[string]      `yaml:"replay_headers"`
	MaxWaiting    scalar[int64]         `yaml:"max_waiting"`
	MaxKeys       scalar[int64]         `yaml:"max_keys"`
}

type fileRoute struct {
	Name        scalar[string]        `yaml:"name"`
	Match       fileMatch             `yaml:"match"`
	Upstream    scalar[string]        `yaml:"upstream"`
	Timeout     scalar[time.Duration] `yaml:"timeout"`
	Auth        scalar[string]        `yaml:"auth"`
	Mode        scalar[string]        `yaml:"mode"`
	Idempotency fileRouteIdempotency  `yaml:"idempotency"`
	Shadow      *fileShadow           `yaml:"shadow"`
	Split       *fileSplit            `yaml:"split"`
}

type fileSplit struct {
	New     scalar[string]  `yaml:"new"`
	Percent scalar[float64] `yaml:"percent"`
	Sticky  scalar[string]  `yaml:"sticky"`
	Plan    *filePlan       `yaml:"plan"`
}

type filePlan struct {
	Steps       []fileStep            `yaml:"steps"`
	MinDuration scalar[time.Duration] `yaml:"min_duration"`
	Gates       fileGates             `yaml:"gates"`
	Prometheus  scalar[string]        `yaml:"prometheus_url"`
}

type fileStep struct {
	Percent     scalar[float64]       `yaml:"percent"`
	MinDuration scalar[time.Duration] `yaml:"min_duration"`
}

type fileGates struct {
	MinRequests       scalar[int64]   `yaml:"min_requests"`
	MaxErrorRateDelta scalar[float64] `yaml:"max_error_rate_delta"`
	MaxP99Ratio       scalar[float64] `yaml:"max_p99_ratio"`
	MinShadowMatch    scalar[float64] `yaml:"min_shadow_match"`
	MinComparisons    scalar[int64]   `yaml:"min_comparisons"`
}

type fileMatch struct {
	Methods []scalar[string] `yaml:"methods"`
	Path    scalar[string]   `yaml:"path"`
}

type fileRouteIdempotency struct {
	Mode        scalar[string]        `yaml:"mode"`
	InFlight    scalar[string]        `yaml:"in_flight"`
	WaitTimeout scalar[time.Duration] `yaml:"wait_timeout"`
	Reconcile   *fileReconcile        `yaml:"reconcile"`
}

type fileReconcile struct {
	Method scalar[string] `yaml:"method"`
	Path   scalar[string] `yaml:"path"`
	Found  scalar[string] `yaml:"found"`
}

type fileShadow struct {
	Upstream       scalar[string]   `yaml:"upstream"`
	Percent        scalar[float64]  `yaml:"percent"`
	Ignore         []scalar[string] `yaml:"ignore"`
	SideEffectFree scalar[bool]     `yaml:"side_effect_free"`
}

// byteSize is a size in the file: bytes, or a number with KiB, MiB or GiB.
type byteSize int64

// keyHash is an API key hash in the file: "sha256:" and 64 hex digits.
type keyHash [32]byte

// A scalar is one value of the file. Decoding it never fails: it keeps
// the value's line and what is wrong with it, for convert to report with
// the value's path. A key left out or set to null leaves it unset.
type scalar[T any] struct {
	v       T
	line    int    // 0 when unset
	problem string // what is wrong with the value; "" when nothing
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *scalar[T]) UnmarshalYAML(n *yaml.Node) error {
	s.line = n.Line
	if n.Kind != yaml.ScalarNode {
		s.problem = fmt.Sprintf("must be %s, not %s", scalarKind[T](), describe(n))
		return nil
	}
	switch v := any(&s.v).(type) {
	case *string:
		*v = n.Value
	case *bool:
		if n.ShortTag() != "!!bool" || n.Decode(v) != nil {
			s.problem = fmt.Sprintf("must be true or false, not %q", n.Value)
		}
	case *int64:
		if n.ShortTag() != "!!int" || n.Decode(v) != nil {
			s.problem = fmt.Sprintf("must be a whole number, not %q", n.Value)
		}
	case *float64:
		if tag := n.ShortTag(); tag != "!!int" && tag != "!!float" || n.Decode(v) != nil || math.IsNaN(*v) || math.IsInf(*v, 0) {
			s.problem = fmt.Sprintf("must be a number, not %q", n.Value)
		}
	case *time.Duration:
		var err error
		if *v, err = time.ParseDuration(n.Value); err != nil {
			s.problem = fmt.Sprintf("%q is not a duration; write a number and a unit, like 30s, 2m or 1h30m", n.Value)
		}
	case *byteSize:
		size, ok := parseSize(n.Value)
		if !ok {
			s.problem = fmt.Sprintf("%q is not a size; write bytes, or a number with KiB, MiB or GiB, like 10MiB", n.Value)
		}
		*v = byteSize(size)
	case *keyHash:
		// The value is never quoted: it may be a key pasted in by mistake.
		digits, prefixed := strings.CutPrefix(n.Value, apiKeyPrefix)
		if _, err := hex.Decode(v[:], []byte(digits)); !prefixed || err != nil || len(digits) != 64 {
			s.problem = `must be "sha256:" followed by the 64 hex digits of the key's SHA-256, never the key itself; ` +
				`printf %s 'THE-KEY' | sha256sum prints those digits`
		}
	case **url.URL:
		var err error
		if *v, err = parseUpstreamURL(n.Value); err != nil {
			s.problem = err.Error()
		}
	}
	return nil
}

// scalarKind names what a scalar[T] holds, with its article.
func scalarKind[T any]() string {
	switch any(*new(T)).(type) {
	case bool:
		return "true or false"
	case int64:
		return "a whole number"
	case float64:
		return "a number"
	case time.Duration:
		return "a duration"
	case byteSize:
		return "a size"
	case keyHash:
		return "an API key hash"
	case *url.URL:
		return "a URL"
	}
	return "a string"
}

// describe names the kind of n, or quotes it when it is a scalar.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// parseSize parses a byte count with an optional KiB, MiB or GiB unit.
func parseSize(s string) (int64, bool) {
	num, unit := s, int64(1)
	for i, suffix := range []string{"KiB", "MiB", "GiB"} {
		if rest, ok := strings.CutSuffix(s, suffix); ok {
			num, unit = strings.TrimSpace(rest), 1<<(10*(i+1))
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64/unit {
		return 0, false
	}
	return v * unit, true
}
