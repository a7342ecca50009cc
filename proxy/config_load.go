package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ficuslabs/ficus/proxy/cutover"
)

// LoadConfig reads the YAML config file at path; defaultUpstream, the
// --upstream flag, defines the upstream "default" unless the file does.
// Problems in the file are reported with the file's name and line.
func LoadConfig(path, defaultUpstream string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read proxy config: %w", err)
	}
	return parseConfig(path, data, defaultUpstream)
}

// ParseConfig parses a YAML config; defaultUpstream, the --upstream flag,
// defines the upstream "default" unless the config does. Each problem is
// a *ConfigError naming the line; several are joined.
func ParseConfig(data []byte, defaultUpstream string) (*Config, error) {
	return parseConfig("", data, defaultUpstream)
}

// DefaultConfig is the configuration without a file: the upstream
// "default" at defaultUpstream, with the default breaker and no load
// shedding, no tenants or rate limits, an in-memory idempotency store, and
// one route that sends every request there without looking at API keys,
// honouring Idempotency-Key on POST and PATCH.
func DefaultConfig(defaultUpstream string) (*Config, error) {
	if defaultUpstream == "" {
		return nil, &ConfigError{Path: "--upstream", Msg: "is required without a config file; pass --upstream URL of the legacy API"}
	}
	cfg := newConfig()
	u, err := parseUpstreamURL(defaultUpstream)
	if err == nil {
		err = checkUpstreamURL(u)
	}
	if err != nil {
		return nil, &ConfigError{Path: "--upstream", Msg: err.Error()}
	}
	cfg.Upstreams[defaultUpstreamName] = newUpstreamConfig(defaultUpstreamName, u)
	cfg.Routes = []RouteConfig{catchAllRoute("none")}
	cfg.fillRouteDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseConfig decodes and validates a YAML config. file names it in
// errors; empty for ParseConfig.
//
// The YAML is read twice: into a yaml.Node, whose walk (configLoader.index)
// learns the line of every path, bounds the values aliases can make, and
// finds what yaml.v3 would stop at; and by yaml.v3 into fileConfig with
// KnownFields(true), which finds unknown keys and values of the wrong
// kind (a line each, given their path here).
func parseConfig(file string, data []byte, defaultUpstream string) (*Config, error) {
	l := &configLoader{file: file, lines: map[string]int{}, following: map[*yaml.Node]bool{},
		reported: map[string]bool{}, reportedParents: map[string]bool{}}
	root, err := decodeYAML(data)
	if err != nil {
		return nil, l.syntaxError(err)
	}
	var f fileConfig
	if root != nil {
		l.index(root, "", reflect.TypeFor[fileConfig]())
		if len(l.errs) > 0 {
			return nil, joinConfigErrors(l.errs)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		var te *yaml.TypeError
		if err := dec.Decode(&f); errors.As(err, &te) {
			l.typeErrors(te)
		} else if err != nil && err != io.EOF {
			return nil, l.syntaxError(err)
		}
	}
	cfg := f.convert(l)

	// --upstream defines "default" unless the file does.
	if defaultUpstream != "" {
		if _, ok := cfg.Upstreams[defaultUpstreamName]; !ok {
			u, err := parseUpstreamURL(defaultUpstream)
			if err == nil {
				err = checkUpstreamURL(u)
			}
			if err != nil {
				l.errs = append(l.errs, &ConfigError{Path: "--upstream", Msg: err.Error()})
				l.reported["upstreams."+defaultUpstreamName] = true // the flag's URL
			}
			cfg.Upstreams[defaultUpstreamName] = newUpstreamConfig(defaultUpstreamName, u)
		}
	}
	if len(cfg.Routes) == 0 {
		if _, ok := cfg.Upstreams[defaultUpstreamName]; !ok {
			l.fail(0, "routes", "there are no routes and no upstream %q; pass --upstream URL, define upstreams.%s, or add routes", defaultUpstreamName, defaultUpstreamName)
			return nil, joinConfigErrors(l.errs)
		}
		cfg.Routes = []RouteConfig{catchAllRoute("optional")}
	}
	cfg.fillRouteDefaults()

	// Validation finds what decoding could not: report it on the line of
	// its path, unless decoding already reported a problem there.
	for _, e := range cfg.validate() {
		if !l.alreadyReported(e.Path) {
			e.File, e.Line = file, l.lineOf(e.Path)
			l.errs = append(l.errs, e)
		}
	}
	if len(l.errs) > 0 {
		return nil, joinConfigErrors(l.errs)
	}
	return cfg, nil
}

// decodeYAML decodes the single YAML document in data; nil when empty.
func decodeYAML(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err == io.EOF {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var next yaml.Node
	if err := dec.Decode(&next); err != io.EOF {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("yaml: line %d: a second YAML document starts here; a config is one document", next.Line)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// configLoader collects the problems of a config file with their lines.
type configLoader struct {
	file   string
	lines  map[string]int // config path -> line of its key or list item; the first wins
	keys   []yamlPlace    // every key, in document order, merged keys last
	values []yamlPlace    // every value, in the same order
	errs   []*ConfigError

	count     int                 // values seen, aliases expanded
	following map[*yaml.Node]bool // aliases being followed

	// reported holds the paths decoding reported problems at, and
	// reportedParents their parents.
	reported, reportedParents map[string]bool
}

// A yamlPlace is a key or value of the file, and its path.
type yamlPlace struct {
	at   string
	line int
	key  string     // for a key
	node *yaml.Node // for a value
	// t is the type a value decodes into, or the type of the struct or
	// map that holds a key; nil when it is not decoded.
	t    reflect.Type
	used bool // blamed for a problem already
}

// fail reports a problem at path at, on line, or, when line is 0, on the
// line of at or its nearest ancestor.
func (l *configLoader) fail(line int, at, format string, args ...any) {
	if line == 0 {
		line = l.lineOf(at)
	}
	l.errs = append(l.errs, &ConfigError{File: l.file, Line: line, Path: at, Msg: fmt.Sprintf(format, args...)})
	l.reported[at] = true
	l.reportedParents[parentPath(at)] = true
}

// syntaxError turns a yaml error such as "yaml: line 3: did not find
// expected key" into a ConfigError.
func (l *configLoader) syntaxError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line, msg := cutLine(msg)
	return &ConfigError{File: l.file, Line: line, Msg: "not valid YAML: " + msg}
}

// cutLine splits "line 3: what" into 3 and "what"; 0 and msg when msg
// names no line.
func cutLine(msg string) (int, string) {
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(n); err == nil {
				return line, after
			}
		}
	}
	return 0, msg
}

// index walks the value n at path at, which decodes into a t (nil when
// it is not decoded): it notes the line and type of every path, and
// reports what yaml.v3 would stop decoding at instead of reporting (keys
// that are not scalars, merges of what is not a mapping, aliases inside
// their own value), and configs that aliases make too large.
func (l *configLoader) index(n *yaml.Node, at string, t reflect.Type) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	l.follow(n, at, func(n *yaml.Node) {
		if !l.spend(n) {
			return
		}
		l.values = append(l.values, yamlPlace{at: at, line: n.Line, node: n, t: t})
		switch n.Kind {
		case yaml.MappingNode:
			l.indexMapping(n, at, t)
		case yaml.SequenceNode:
			for i, item := range n.Content {
				p := fmt.Sprintf("%s[%d]", at, i)
				l.setLine(p, item.Line)
				l.index(item, p, elemType(t, reflect.Slice))
			}
		}
	})
}

// indexMapping indexes the pairs of the mapping n, then those of the
// mappings it merges, as yaml.v3 decodes them into a t.
func (l *configLoader) indexMapping(n *yaml.Node, at string, t reflect.Type) {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge":
			merges = append(merges, v)
			continue
		case k.Kind != yaml.ScalarNode:
			l.fail(k.Line, at, "a key must be a plain word, not %s", describe(k))
			continue
		}
		p := joinPath(at, k.Value)
		l.keys = append(l.keys, yamlPlace{at: p, line: k.Line, key: k.Value, t: t})
		l.setLine(p, k.Line)
		vt := elemType(t, reflect.Map)
		if t != nil && t.Kind() == reflect.Struct {
			vt = nil
			if i := slices.Index(yamlKeys(t), k.Value); i >= 0 {
				vt = t.Field(i).Type
			}
		}
		l.index(v, p, vt)
	}
	for _, m := range merges {
		l.follow(m, at, func(m *yaml.Node) {
			items := []*yaml.Node{m}
			if m.Kind == yaml.SequenceNode {
				items = m.Content
			}
			for _, item := range items {
				l.follow(item, at, func(item *yaml.Node) {
					if item.Kind != yaml.MappingNode {
						l.fail(item.Line, at, "<<: can merge only a mapping or a list of mappings, not %s", describe(item))
					} else if l.spend(item) {
						l.indexMapping(item, at, t)
					}
				})
			}
		})
	}
}

// elemType returns the element type of t when t is of kind k, else nil.
func elemType(t reflect.Type, k reflect.Kind) reflect.Type {
	if t == nil || t.Kind() != k {
		return nil
	}
	return t.Elem()
}

// yamlKeys returns the keys of the struct type t, one per field, "" for
// a field yaml.v3 does not decode.
func yamlKeys(t reflect.Type) []string {
	keys := make([]string, t.NumField())
	for i := range keys {
		keys[i], _, _ = strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
	}
	return keys
}

// follow calls fn with the node n stands for: n, or the value its alias
// names, unless that alias is inside its own value.
func (l *configLoader) follow(n *yaml.Node, at string, fn func(*yaml.Node)) {
	if n.Kind != yaml.AliasNode || n.Alias == nil {
		fn(n)
		return
	}
	if l.following[n] {
		l.fail(n.Line, at, "alias *%s is inside the value it stands for", n.Value)
		return
	}
	l.following[n] = true
	defer delete(l.following, n)
	fn(n.Alias)
}

// spend counts the values of n against maxConfigValues; false when the
// config holds too many.
func (l *configLoader) spend(n *yaml.Node) bool {
	over := l.count > maxConfigValues
	l.count += len(n.Content)
	if l.count <= maxConfigValues {
		return true
	}
	if !over {
		l.fail(n.Line, "", "the config holds more than %d values; do aliases repeat a large part of it?", maxConfigValues)
	}
	return false
}

func (l *configLoader) setLine(at string, line int) {
	if _, ok := l.lines[at]; !ok {
		l.lines[at] = line
	}
}

// typeErrors reports the problems yaml.v3 found, each on its line, with
// the path of the key or value there.
func (l *configLoader) typeErrors(te *yaml.TypeError) {
	for _, msg := range te.Errors {
		line, msg := cutLine(msg)
		if name, ok := cutField(msg, " not found in type "); ok {
			k := l.key(line, name)
			var known []string
			if k.t != nil {
				known = slices.DeleteFunc(yamlKeys(k.t), func(key string) bool { return key == "" })
			}
			l.fail(line, k.at, "unknown key%s", suggestKey(name, known))
			continue
		}
		if name, ok := cutField(msg, " already set in type "); ok {
			l.fail(line, l.key(line, name).at, "is set twice")
			continue
		}
		if rest, ok := strings.CutPrefix(msg, "mapping key "); ok {
			quoted, _, _ := strings.Cut(rest, " already defined")
			name, _ := strconv.Unquote(quoted)
			k := l.key(line, name)
			if k.t != nil && k.t.Kind() == reflect.Struct {
				l.fail(line, k.at, "is set twice")
			} else {
				l.fail(line, k.at, "is defined twice")
			}
			continue
		}
		if rest, ok := strings.CutPrefix(msg, "cannot unmarshal "); ok {
			tag, _, _ := strings.Cut(rest, " ")
			_, typ, _ := strings.Cut(rest, " into ")
			want := "a mapping of keys to values"
			if strings.HasPrefix(typ, "[]") {
				want = "a list"
			}
			if v := l.value(line, tag, typ); v != nil {
				l.fail(line, v.at, "must be %s, not %s", want, describe(v.node))
				continue
			}
		}
		l.fail(line, "", "%s", msg)
	}
}

// cutField returns NAME from yaml.v3's "field NAME<sep>TYPE".
func cutField(msg, sep string) (string, bool) {
	rest, ok := strings.CutPrefix(msg, "field ")
	i := strings.LastIndex(rest, sep)
	if !ok || i < 0 {
		return "", false
	}
	return rest[:i], true
}

// key returns the first key name on line not yet blamed; one at path
// name when there is none.
func (l *configLoader) key(line int, name string) yamlPlace {
	for i := range l.keys {
		if k := &l.keys[i]; !k.used && k.line == line && k.key == name {
			k.used = true
			return *k
		}
	}
	return yamlPlace{at: name}
}

// value returns the first value on line with the tag tag, decoded into
// the type named typ, not yet blamed; nil when there is none.
func (l *configLoader) value(line int, tag, typ string) *yamlPlace {
	for i := range l.values {
		if v := &l.values[i]; !v.used && v.line == line && v.node.ShortTag() == tag && v.t != nil && v.t.String() == typ {
			v.used = true
			return v
		}
	}
	return nil
}

// alreadyReported reports whether decoding reported a problem at path, at
// one of its ancestors, or at one of its children: validation would then
// only repeat it.
func (l *configLoader) alreadyReported(at string) bool {
	if l.reportedParents[at] {
		return true
	}
	for ; at != ""; at = parentPath(at) {
		if l.reported[at] {
			return true
		}
	}
	return false
}

// parentPath returns the path of the mapping or list that holds at.
func parentPath(at string) string {
	return at[:max(strings.LastIndexAny(at, ".["), 0)]
}

func joinPath(at, key string) string {
	if at == "" {
		return key
	}
	return at + "." + key
}

// lineOf returns the line of path, or of its nearest ancestor that has one.
func (l *configLoader) lineOf(at string) int {
	for at != "" {
		if line, ok := l.lines[at]; ok {
			return line
		}
		at = parentPath(at)
	}
	return 0
}

// suggestKey says which known key got is probably a misspelling of, or
// lists the known keys.
func suggestKey(got string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if dist := editDistance(strings.ToLower(got), k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return "; known keys are " + strings.Join(known, ", ")
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := range len(a) {
		cur[0] = i + 1
		for j := range len(b) {
			cost := 1
			if a[i] == b[j] {
				cost = 0
			}
			cur[j+1] = min(prev[j+1]+1, cur[j]+1, prev[j]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// The conversion of a fileConfig into a Config: the defaults, and the
// problems of the scalars, reported with their path.

// get returns the value of s, unless it is unset or wrong, which it
// reports at path at.
func get[T any](l *configLoader, at string, s scalar[T]) (T, bool) {
	if s.problem != "" {
		l.fail(s.line, at, "%s", s.problem)
	}
	return s.v, s.line > 0 && s.problem == ""
}

// set stores the value of s in dst, unless it is unset or wrong.
func set[T any](l *configLoader, at string, s scalar[T], dst *T) {
	if v, ok := get(l, at, s); ok {
		*dst = v
	}
}

func (l *configLoader) size(at string, s scalar[byteSize], dst *int64) {
	if v, ok := get(l, at, s); ok {
		*dst = int64(v)
	}
}

func (l *configLoader) int(at string, s scalar[int64], dst *int) {
	switch v, ok := get(l, at, s); {
	case ok && (v < math.MinInt32 || v > math.MaxInt32):
		l.fail(s.line, at, "%d is out of range; use a whole number from %d to %d", v, math.MinInt32, math.MaxInt32)
	case ok:
		*dst = int(v)
	}
}

func (l *configLoader) uint32(at string, s scalar[int64], dst *uint32) {
	switch v, ok := get(l, at, s); {
	case ok && (v < 0 || v > math.MaxUint32):
		l.fail(s.line, at, "must be a whole number from 0 to %d, not %d", uint32(math.MaxUint32), v)
	case ok:
		*dst = uint32(v)
	}
}

// strings returns the values of a list of strings; an unset item is "".
func (l *configLoader) strings(at string, list []scalar[string]) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i], _ = get(l, fmt.Sprintf("%s[%d]", at, i), s)
	}
	return out
}

// positive stores the duration s in dst unless it is 0, which in a file
// is a mistake: leaving the key out says why (hint).
func (l *configLoader) positive(at string, s scalar[time.Duration], dst *time.Duration, hint string) {
	switch v, ok := get(l, at, s); {
	case ok && v == 0:
		l.fail(s.line, at, "must be a duration above 0; %s", hint)
	case ok:
		*dst = v
	}
}

func (f *fileConfig) convert(l *configLoader) *Config {
	cfg := newConfig()
	l.size("body_limit", f.BodyLimit, &cfg.BodyLimit)
	set(l, "underscores_in_headers", f.UnderscoresInHeaders, &cfg.UnderscoresInHeaders)
	for _, name := range slices.Sorted(maps.Keys(f.Upstreams)) {
		u := f.Upstreams[name]
		cfg.Upstreams[name] = u.convert(l, "upstreams."+name, name)
	}
	for i, t := range f.Tenants {
		cfg.Tenants = append(cfg.Tenants, t.convert(l, fmt.Sprintf("tenants[%d]", i)))
	}
	set(l, "anonymous.tenant", f.Anonymous.Tenant, &cfg.Anonymous.Tenant)
	set(l, "anonymous.lane", f.Anonymous.Lane, &cfg.Anonymous.Lane)
	for i, rl := range f.RateLimits {
		cfg.RateLimits = append(cfg.RateLimits, rl.convert(l, fmt.Sprintf("rate_limits[%d]", i)))
	}
	fid, id := &f.Idempotency, &cfg.Idempotency
	set(l, "idempotency.store", fid.Store, &id.Store)
	set(l, "idempotency.ttl", fid.TTL, &id.TTL)
	set(l, "idempotency.lock_ttl", fid.LockTTL, &id.LockTTL)
	l.size("idempotency.max_body", fid.MaxBody, &id.MaxBody)
	if fid.ReplayHeaders != nil {
		id.ReplayHeaders = l.strings("idempotency.replay_headers", fid.ReplayHeaders)
	}
	l.int("idempotency.max_waiting", fid.MaxWaiting, &id.MaxWaiting)
	l.int("idempotency.max_keys", fid.MaxKeys, &id.MaxKeys)
	for i := range f.Routes {
		cfg.Routes = append(cfg.Routes, f.Routes[i].convert(l, fmt.Sprintf("routes[%d]", i)))
	}
	return cfg
}

func (f *fileUpstream) convert(l *configLoader, at, name string) *UpstreamConfig {
	u := newUpstreamConfig(name, nil)
	set(l, at+".url", f.URL, &u.URL)
	set(l, at+".timeout", f.Timeout, &u.Timeout)
	l.int(at+".max_idle_conns_per_host", f.MaxIdleConnsPerHost, &u.MaxIdleConnsPerHost)
	l.int(at+".max_in_flight", f.MaxInFlight, &u.MaxInFlight)
	l.size(at+".max_response_header_bytes", f.MaxResponseHeaderBytes, &u.MaxResponseHeaderBytes)
	for _, lane := range slices.Sorted(maps.Keys(f.LaneShare)) {
		var share float64
		set(l, at+".lane_share."+lane, f.LaneShare[lane], &share)
		u.LaneShare[lane] = share
	}
	fb, b, at := &f.Breaker, &u.Breaker, at+".breaker"
	set(l, at+".disabled", fb.Disabled, &b.Disabled)
	l.uint32(at+".consecutive_failures", fb.ConsecutiveFailures, &b.ConsecutiveFailures)
	set(l, at+".failure_ratio", fb.FailureRatio, &b.FailureRatio)
	l.uint32(at+".min_requests", fb.MinRequests, &b.MinRequests)
	set(l, at+".interval", fb.Interval, &b.Interval)
	set(l, at+".open_for", fb.OpenFor, &b.OpenFor)
	l.uint32(at+".half_open_probes", fb.HalfOpenProbes, &b.HalfOpenProbes)
	set(l, at+".slow_call", fb.SlowCall, &b.SlowCall)
	return u
}

func (f *fileTenant) convert(l *configLoader, at string) TenantConfig {
	var t TenantConfig
	set(l, at+".name", f.Name, &t.Name)
	set(l, at+".lane", f.Lane, &t.Lane)
	for i, k := range f.APIKeys {
		if h, ok := get(l, fmt.Sprintf("%s.api_keys[%d]", at, i), k); ok {
			t.APIKeyHashes = append(t.APIKeyHashes, h)
		}
	}
	return t
}

func (f *fileRateLimit) convert(l *configLoader, at string) RateLimitConfig {
	rl := RateLimitConfig{Per: "tenant"}
	set(l, at+".name", f.Name, &rl.Name)
	set(l, at+".lane", f.Lane, &rl.Lane)
	set(l, at+".tenant", f.Tenant, &rl.Tenant)
	set(l, at+".per", f.Per, &rl.Per)
	set(l, at+".rate", f.Rate, &rl.Rate)
	set(l, at+".dry_run", f.DryRun, &rl.DryRun)
	if f.Burst.line > 0 {
		l.int(at+".burst", f.Burst, &rl.Burst)
	} else {
		rl.Burst = 1
		if rl.Rate > 1 && rl.Rate < math.MaxInt32 {
			rl.Burst = int(math.Ceil(rl.Rate))
		}
	}
	return rl
}

func (f *fileRoute) convert(l *configLoader, at string) RouteConfig {
	r := RouteConfig{Path: "/", Prefix: true, Upstream: defaultUpstreamName, Auth: "optional"}
	set(l, at+".name", f.Name, &r.Name)
	set(l, at+".mode", f.Mode, &r.Mode)
	set(l, at+".upstream", f.Upstream, &r.Upstream)
	set(l, at+".auth", f.Auth, &r.Auth)
	// 0 in RouteConfig means the upstream's timeout.
	l.positive(at+".timeout", f.Timeout, &r.Timeout, "leave it out to use the upstream's timeout")

	if m := f.Match.Methods; len(m) > 0 { // [] matches any method, as no list does
		r.Methods = l.strings(at+".match.methods", m)
	}
	if p, ok := get(l, at+".match.path", f.Match.Path); ok {
		r.Path, r.Prefix = p, false
		if p, ok := strings.CutSuffix(p, "/*"); ok {
			r.Path, r.Prefix = p+"/", true
		}
	}

	fid, id := &f.Idempotency, &r.Idempotency
	set(l, at+".idempotency.mode", fid.Mode, &id.Mode)
	set(l, at+".idempotency.in_flight", fid.InFlight, &id.InFlight)
	// 0 in RouteIdempotency means the route's timeout.
	l.positive(at+".idempotency.wait_timeout", fid.WaitTimeout, &id.WaitTimeout, "leave it out to wait as long as the route's timeout")
	if frc := fid.Reconcile; frc != nil {
		at := at + ".idempotency.reconcile"
		rc := &ReconcileConfig{Method: http.MethodGet}
		set(l, at+".method", frc.Method, &rc.Method)
		set(l, at+".path", frc.Path, &rc.PathTemplate)
		// The only test there is, accepted so that it can be written down.
		if found, ok := get(l, at+".found", frc.Found); ok && strings.Join(strings.Fields(found), "") != "$.total>0" {
			l.fail(frc.Found.line, at+".found", `%q is not supported; the only test is "$.total > 0": the lookup answers 200 with a non-empty list`, found)
		}
		id.Reconcile = rc
	}

	if fs := f.Shadow; fs != nil {
		at := at + ".shadow"
		s := &ShadowConfig{}
		set(l, at+".upstream", fs.Upstream, &s.Upstream)
		if fs.Percent.line == 0 {
			l.fail(0, at+".percent", "is required: the share of requests to mirror, from 0 to 100")
		}
		set(l, at+".percent", fs.Percent, &s.Percent)
		if fs.Ignore != nil {
			s.Ignore = l.strings(at+".ignore", fs.Ignore)
		}
		set(l, at+".side_effect_free", fs.SideEffectFree, &s.SideEffectFree)
		r.Shadow = s
	}
	if fs := f.Split; fs != nil {
		r.Split = fs.convert(l, at+".split")
	}
	return r
}

// percent reads a share in percent into basis points.
func (l *configLoader) percent(at string, s scalar[float64], dst *int) {
	v, ok := get(l, at, s)
	if !ok {
		return
	}
	bps, ok := cutover.PercentToBPS(v)
	if !ok {
		l.fail(s.line, at, "%v is not a share from 0 to 100 percent with at most two decimals", v)
		*dst = -1
		return
	}
	*dst = bps
}

func (fs *fileSplit) convert(l *configLoader, at string) *SplitConfig {
	s := &SplitConfig{Sticky: stickyTenant}
	set(l, at+".new", fs.New, &s.New)
	l.percent(at+".percent", fs.Percent, &s.BPS)
	set(l, at+".sticky", fs.Sticky, &s.Sticky)
	fp := fs.Plan
	if fp == nil {
		return s
	}
	at += ".plan"
	p := &cutover.Plan{}
	set(l, at+".min_duration", fp.MinDuration, &p.MinDuration)
	set(l, at+".prometheus_url", fp.Prometheus, &p.PrometheusURL)
	if fp.Steps == nil {
		l.fail(0, at+".steps", "is required: the new target's shares in percent, going up, like [{percent: 1}, {percent: 10}, {percent: 100}]")
	}
	for i, fst := range fp.Steps {
		at := fmt.Sprintf("%s.steps[%d]", at, i)
		var st cutover.Step
		if fst.Percent.line == 0 {
			l.fail(0, at+".percent", "is required: the new target's share at this step, above 0 and at most 100")
		}
		l.percent(at+".percent", fst.Percent, &st.BPS)
		set(l, at+".min_duration", fst.MinDuration, &st.MinDuration)
		p.Steps = append(p.Steps, st)
	}
	g, fg := &p.Gates, &fp.Gates
	set(l, at+".gates.min_requests", fg.MinRequests, &g.MinRequests)
	set(l, at+".gates.max_error_rate_delta", fg.MaxErrorRateDelta, &g.MaxErrorRateDelta)
	set(l, at+".gates.max_p99_ratio", fg.MaxP99Ratio, &g.MaxP99Ratio)
	set(l, at+".gates.min_shadow_match", fg.MinShadowMatch, &g.MinShadowMatch)
	set(l, at+".gates.min_comparisons", fg.MinComparisons, &g.MinComparisons)
	*p = p.WithDefaults()
	s.Plan = p
	return s
}
