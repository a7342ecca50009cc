package proxy

import (
	"net/http"
	"time"

	"github.com/ficuslabs/ficus/proxy/cutover"
)

// Sticky keys of a split: what keeps a client on one side.
const (
	stickyTenant = "tenant"
	stickyKey    = "idempotency_key"
)

// chooseSide picks the target of c: the route's upstream, or, on a route
// with a split, the side the caller's stickiness key falls on at the
// route's weight (the shared one when the Splitter has it, else the
// config's).
func (p *Proxy) chooseSide(c *call, r *http.Request) {
	c.up = c.route.upstream
	sp := c.route.cfg.Split
	if sp == nil || c.route.next == nil {
		return
	}
	bps := c.route.configBPS
	if p.split != nil {
		if w, ok := p.split.Weight(c.route.cfg.Name); ok {
			bps = w
		}
	}
	key := c.caller.Tenant
	if sp.Sticky == stickyKey {
		if k := r.Header.Get(idempotencyKeyHeader); k != "" {
			key += "\x00" + k
		}
	}
	c.side = cutover.Side(c.route.cfg.Name, key, bps)
	if c.side == cutover.SideNew {
		c.up = c.route.next
	}
}

// observe tells the Splitter how a call of a route with a split went.
func (p *Proxy) observe(c *call, failed bool, took time.Duration) {
	if p.split != nil && c.side != "" {
		p.split.Observe(c.route.cfg.Name, c.side, failed, took)
	}
}

// sampleShadow reports whether c's request is mirrored: never when it
// goes to the new target already.
func (c *call) sampleShadow(r *http.Request) bool {
	return c.side != cutover.SideNew && c.route.sampleShadow(r)
}

// CutoverRoutes returns the routes with a split, as package cutover
// records them.
func (c *Config) CutoverRoutes() []cutover.RouteSpec {
	var out []cutover.RouteSpec
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Split == nil {
			continue
		}
		spec := cutover.RouteSpec{Route: r.Name, Legacy: r.Upstream, New: r.Split.New, BPS: r.Split.BPS}
		if r.Split.Plan != nil {
			spec.Plan = *r.Split.Plan
		}
		spec.Plan.Shadow = r.Shadow != nil && r.Shadow.Upstream == r.Split.New
		out = append(out, spec)
	}
	return out
}

// shadowResult returns the hook that tells the Splitter a shadow
// comparison's result, for a route whose shadow candidate is its split's
// new target; nil otherwise.
func (p *Proxy) shadowResult(rc *RouteConfig) func(match bool) {
	if p.split == nil || rc.Split == nil || rc.Shadow == nil || rc.Shadow.Upstream != rc.Split.New {
		return nil
	}
	name := rc.Name
	return func(match bool) { p.split.ObserveShadow(name, match) }
}

// breakerOpened returns the hook that tells the Splitter an upstream's
// breaker opened; nil without one.
func (p *Proxy) breakerOpened(upstream string) func() {
	if p.split == nil {
		return nil
	}
	return func() { p.split.BreakerOpened(upstream) }
}
