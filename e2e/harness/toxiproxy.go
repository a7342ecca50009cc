package harness

import (
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
)

// Toxiproxy is a toxiproxy server in the run: TCP proxies that a scenario
// puts between two services, to add latency, cut connections or partition
// one of them (toxics and Proxy.Disable).
type Toxiproxy struct {
	*Container
	// Client is toxiproxy's API client, on the published API port.
	Client *toxiproxy.Client
	links  map[string]Link
}

// Link is one proxy: other containers connect to the toxiproxy container's
// Name at Port instead of Upstream.
type Link struct {
	Name     string // the proxy's name in toxiproxy
	Port     string // the port it listens on inside the toxiproxy container
	Upstream string // "mes:8081"
}

const toxiproxyAPI = "8474"

// Toxiproxy starts a toxiproxy server of t's own with the given links,
// stopped when t ends.
func (e *Env) Toxiproxy(t testing.TB, name string, links ...Link) *Toxiproxy {
	t.Helper()
	ports := []string{toxiproxyAPI}
	for _, l := range links {
		ports = append(ports, l.Port)
	}
	c := e.Run(t, Spec{
		Name:  name,
		Image: e.cfg.ToxiproxyImage,
		Cmd:   []string{"-host=0.0.0.0", "-port=" + toxiproxyAPI},
		Env:   map[string]string{"LOG_LEVEL": "info"},
		Ports: ports,
		Ready: "/version",
	})
	x := &Toxiproxy{Container: c, Client: toxiproxy.NewClient(c.URL(t, toxiproxyAPI)), links: map[string]Link{}}
	for _, l := range links {
		if _, err := x.Client.CreateProxy(l.Name, "0.0.0.0:"+l.Port, l.Upstream); err != nil {
			t.Fatalf("toxiproxy %s: proxy %s to %s: %v", name, l.Name, l.Upstream, err)
		}
		x.links[l.Name] = l
	}
	return x
}

// Proxy is the named link's proxy, to add toxics to or disable.
func (x *Toxiproxy) Proxy(t testing.TB, link string) *toxiproxy.Proxy {
	t.Helper()
	p, err := x.Client.Proxy(link)
	if err != nil {
		t.Fatalf("toxiproxy %s: proxy %s: %v", x.Name, link, err)
	}
	return p
}

// Via is the address containers use to reach the link's upstream through
// toxiproxy ("toxi:20001").
func (x *Toxiproxy) Via(link string) string {
	return x.Inside(x.links[link].Port)
}
