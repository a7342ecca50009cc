// Package forwardhdr holds the rules for the header fields a proxy passes
// between a client and an upstream: which are hop-by-hop, which of a
// client's fields never reach the upstream (the ones the proxy sets
// itself, its API key, names with underscores), and the X-Forwarded-*
// fields the upstream gets. Both of ficus's forwarding paths, its own
// HTTP/1.1 client and httputil.ReverseProxy, apply these rules, so that
// an upstream sees the same request whichever path it came by.
package forwardhdr

import (
	"net"
	"net/http"
	"net/textproto"
	"strings"
)

// Fields the proxy sets on every forwarded request, and the one it takes
// API keys in; a client's fields of these names are dropped.
const (
	RequestID = "X-Request-Id"
	Tenant    = "X-Ficus-Tenant"
	APIKey    = "X-Api-Key"
)

// hopByHop are the hop-by-hop fields a proxy does not pass on (RFC 9110
// section 7.6.1), and the non-standard ones used as such.
var hopByHop = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// HopByHop reports whether the field name (in canonical form) is
// hop-by-hop: one of the fixed ones, or one the message's Connection
// field (connection) names.
func HopByHop(name string, connection []string) bool {
	switch name {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return len(connection) > 0 && HasToken(connection, name)
}

// RemoveHopByHop deletes the hop-by-hop fields from h: the fixed ones
// and those its Connection field names.
func RemoveHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for name := range strings.SplitSeq(f, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		delete(h, name)
	}
}

// HasToken reports whether a comma-separated field holds token, in any
// case.
func HasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(t), token) {
				return true
			}
		}
	}
	return false
}

// Rules decide which of a client's end-to-end fields reach the upstream.
// The zero value is the default: names with underscores are dropped.
type Rules struct {
	// Underscores passes fields whose names have underscores on, as
	// nginx's "underscores_in_headers on" does. By default they are
	// dropped: CGI, PHP and WSGI read X_Ficus_Tenant as X-Ficus-Tenant,
	// so a client could set a field the proxy owns.
	Underscores bool
}

// Drop reports whether a client's field name (in canonical form) must not
// reach the upstream: one the proxy sets itself (X-Request-Id,
// X-Ficus-Tenant, Forwarded, X-Forwarded-*), the API key, or a name with
// underscores. With Underscores set, a name with underscores is dropped
// only when it reads as one of the others with dashes for underscores.
// Hop-by-hop fields are HopByHop's business.
func (r Rules) Drop(name string) bool {
	if owned(name) {
		return true
	}
	if strings.IndexByte(name, '_') < 0 {
		return false
	}
	if !r.Underscores {
		return true
	}
	return owned(textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(name, "_", "-")))
}

// owned reports whether the proxy sets the field name itself or takes
// API keys in it.
func owned(name string) bool {
	switch name {
	case RequestID, Tenant, APIKey, "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
		return true
	}
	return false
}

// XForwarded returns the X-Forwarded-* values for r, the client's request:
// its peer address (empty when r.RemoteAddr has none), the Host it asked
// for, and "https" or "http". The client's own X-Forwarded-* fields are
// never taken: at the edge they are whatever the client made up.
func XForwarded(r *http.Request) (forIP, host, proto string) {
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		forIP = ip
	}
	proto = "http"
	if r.TLS != nil {
		proto = "https"
	}
	return forIP, r.Host, proto
}
