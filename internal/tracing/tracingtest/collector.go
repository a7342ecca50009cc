// Package tracingtest is an OTLP/HTTP trace receiver for tests: it
// decodes what an exporter sends to /v1/traces and keeps the spans.
package tracingtest

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, flattened for assertions.
type Span struct {
	Service      string
	Name         string
	TraceID      string
	SpanID       string
	ParentSpanID string
	Kind         tracepb.Span_SpanKind
	Start, End   time.Time
	Attrs        map[string]string
	Links        []string // the linked spans' ids
	Status       string
}

// Duration is how long the span took.
func (s Span) Duration() time.Duration { return s.End.Sub(s.Start) }

// Collector receives OTLP/HTTP protobuf exports.
type Collector struct {
	URL string // the endpoint: OTEL_EXPORTER_OTLP_ENDPOINT

	mu    sync.Mutex
	spans []Span
}

// New starts a Collector on loopback, stopped when t ends.
func New(t testing.TB) *Collector {
	c := &Collector{}
	srv := httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

func (c *Collector) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var got []Span
	for _, rs := range req.GetResourceSpans() {
		service := attrs(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := Span{
					Service: service, Name: s.GetName(), Kind: s.GetKind(),
					TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
					ParentSpanID: hex.EncodeToString(s.GetParentSpanId()),
					Start:        time.Unix(0, int64(s.GetStartTimeUnixNano())),
					End:          time.Unix(0, int64(s.GetEndTimeUnixNano())),
					Attrs:        attrs(s.GetAttributes()),
					Status:       s.GetStatus().GetCode().String(),
				}
				for _, l := range s.GetLinks() {
					sp.Links = append(sp.Links, hex.EncodeToString(l.GetSpanId()))
				}
				got = append(got, sp)
			}
		}
	}
	c.mu.Lock()
	c.spans = append(c.spans, got...)
	c.mu.Unlock()
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.GetKey()] = x.StringValue
		case *commonpb.AnyValue_BoolValue:
			m[kv.GetKey()] = fmt.Sprint(x.BoolValue)
		case *commonpb.AnyValue_IntValue:
			m[kv.GetKey()] = fmt.Sprint(x.IntValue)
		case *commonpb.AnyValue_DoubleValue:
			m[kv.GetKey()] = fmt.Sprint(x.DoubleValue)
		default:
			m[kv.GetKey()] = v.String()
		}
	}
	return m
}

// Spans returns the spans received so far.
func (c *Collector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.spans)
}

// Find returns the first received span that ok accepts.
func (c *Collector) Find(ok func(Span) bool) (Span, bool) {
	for _, s := range c.Spans() {
		if ok(s) {
			return s, true
		}
	}
	return Span{}, false
}

// Named returns a filter for spans whose name starts with prefix.
func Named(prefix string) func(Span) bool {
	return func(s Span) bool { return strings.HasPrefix(s.Name, prefix) }
}

// Tree writes the spans of trace id as an indented tree, children under
// their parents in start order, each with its service, duration, start
// (after the trace's first span) and kind, and its attributes below: the
// text form of a trace view.
func Tree(spans []Span, traceID string) string {
	var in []Span
	ids := map[string]bool{}
	for _, s := range spans {
		if s.TraceID == traceID {
			in = append(in, s)
			ids[s.SpanID] = true
		}
	}
	slices.SortFunc(in, func(a, b Span) int { return a.Start.Compare(b.Start) })
	var t0 time.Time
	if len(in) > 0 {
		t0 = in[0].Start
	}
	var b strings.Builder
	var walk func(parent string, depth int)
	walk = func(parent string, depth int) {
		for _, s := range in {
			root := parent == "" && !ids[s.ParentSpanID]
			if s.ParentSpanID != parent && !root {
				continue
			}
			if parent == "" && !root {
				continue
			}
			keys := make([]string, 0, len(s.Attrs))
			for k := range s.Attrs {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			var kv []string
			for _, k := range keys {
				kv = append(kv, k+"="+s.Attrs[k])
			}
			fmt.Fprintf(&b, "%s%s [%s] %s, at +%s, %s", strings.Repeat("  ", depth), s.Name, s.Service,
				s.Duration().Round(10*time.Microsecond), s.Start.Sub(t0).Round(10*time.Microsecond),
				strings.ToLower(strings.TrimPrefix(s.Kind.String(), "SPAN_KIND_")))
			if len(s.Links) > 0 {
				fmt.Fprintf(&b, " links=%v", s.Links)
			}
			if len(kv) > 0 {
				fmt.Fprintf(&b, "\n%s    %s", strings.Repeat("  ", depth), strings.Join(kv, " "))
			}
			b.WriteString("\n")
			walk(s.SpanID, depth+1)
		}
	}
	walk("", 0)
	return b.String()
}
