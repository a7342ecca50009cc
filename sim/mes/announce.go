package mes

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/cloudevent"
)

// StatusEventType is the CloudEvents type of the status events the MES
// sends the shop, one per status change production makes; the event's
// data is the order (Order), its subject the order's client_ref.
const StatusEventType = "ficus.sim.mes.order.status"

// StatusEventSource is the source of the MES's status events.
const StatusEventSource = "ficus-sim-mes"

// StatusEvent returns the CloudEvent announcing o's status as of at. Its
// id is the order's id and status, the same for a repeated announcement.
func StatusEvent(o Order, at time.Time) (cloudevent.Event, error) {
	data, err := json.Marshal(o)
	if err != nil {
		return cloudevent.Event{}, fmt.Errorf("status event of order %d: %w", o.ID, err)
	}
	return cloudevent.Event{
		SpecVersion:     cloudevent.SpecVersion,
		ID:              strconv.FormatInt(o.ID, 10) + "-" + o.Status,
		Source:          StatusEventSource,
		Type:            StatusEventType,
		Subject:         o.ClientRef,
		Time:            at.UTC(),
		DataContentType: "application/json",
		Data:            data,
	}, nil
}

// DefaultAnnounceTimeout is AnnouncerConfig.Timeout's default.
const DefaultAnnounceTimeout = 5 * time.Second

// AnnouncerConfig describes where the MES sends its status events.
type AnnouncerConfig struct {
	// URL receives each event by POST, as structured CloudEvents JSON:
	// the shop's status endpoint (see sim/shop StatusHandler). Required,
	// http or https.
	URL string
	// Client sends the events. Defaults to a client with Timeout.
	Client *http.Client
	// Timeout bounds one delivery. Defaults to 5s.
	Timeout time.Duration
	// Now stamps the events. Defaults to time.Now.
	Now func() time.Time
	// Metrics receives ficus_sim_mes_status_events_total. Defaults to a
	// new set.
	Metrics *metrics.Set
	// Logger receives failed deliveries. Defaults to discarding.
	Logger *slog.Logger
}

// Announcer delivers the MES's status events to the shop over HTTP, the
// way the legacy MES tells the shop through its queue: once, without a
// retry, so an event that fails to arrive is lost (as are those the
// lose_status_rate fault drops before they are sent). Its Announce is a
// Config.OnStatus.
type Announcer struct {
	url    string
	client *http.Client
	now    func() time.Time
	log    *slog.Logger
	sent   *metrics.Counter
	failed *metrics.Counter
}

// NewAnnouncer returns an Announcer, or an error wrapping ErrInvalidConfig.
func NewAnnouncer(cfg AnnouncerConfig) (*Announcer, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: status event URL %q: want http(s)://host/path of the shop's status endpoint", ErrInvalidConfig, cfg.URL)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: announce timeout %s is negative", ErrInvalidConfig, cfg.Timeout)
	}
	set := cfg.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	a := &Announcer{
		url:    u.String(),
		client: cfg.Client,
		now:    cfg.Now,
		log:    cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)).With("component", "sim_mes"),
		sent:   set.GetOrCreateCounter(`ficus_sim_mes_status_events_total{outcome="sent"}`),
		failed: set.GetOrCreateCounter(`ficus_sim_mes_status_events_total{outcome="failed"}`),
	}
	if a.client == nil {
		a.client = &http.Client{Timeout: cmp.Or(cfg.Timeout, DefaultAnnounceTimeout)}
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a, nil
}

// Announce sends o's status event; a failure is logged and counted, and
// the event is not sent again.
func (a *Announcer) Announce(ctx context.Context, o Order) {
	if err := a.send(ctx, o); err != nil {
		a.failed.Inc()
		if ctx.Err() == nil {
			a.log.Warn("status event not delivered", "id", o.ID, "client_ref", o.ClientRef, "status", o.Status, "err", err)
		}
		return
	}
	a.sent.Inc()
}

func (a *Announcer) send(ctx context.Context, o Order) error {
	e, err := StatusEvent(o, a.now())
	if err != nil {
		return err
	}
	body, err := e.MarshalJSON()
	if err != nil {
		return fmt.Errorf("status event of order %d: %w", o.ID, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("status event of order %d: %w", o.ID, err)
	}
	req.Header.Set("Content-Type", cloudevent.ContentType)
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("post status event of order %d: %w", o.ID, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post status event of order %d: the shop answered %s", o.ID, resp.Status)
	}
	return nil
}
