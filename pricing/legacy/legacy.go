// Package legacy is the calculator that asks the legacy MES for a price:
// POST /api/v1/quotes with {"model_url", "material", "quantity"}, answered
// with {"price", "currency", "queued_ms", "calc_ms"}. The MES says neither
// how it reached the price nor what printing takes, so its quotes have no
// breakdown and no estimate.
package legacy

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ficuslabs/ficus/pricing"
)

// ErrInvalidConfig is returned by New for a Config it cannot use.
var ErrInvalidConfig = errors.New("legacy: invalid config")

// Name is the calculator's name.
const Name = "legacy"

// DefaultTimeout is Config.Timeout's default: the MES takes 2–3 minutes
// for a price, 30 for a complex model, and queues them one at a time.
const DefaultTimeout = 40 * time.Minute

// maxAnswerBytes bounds the MES's answer.
const maxAnswerBytes = 64 << 10

// Config describes the MES to ask.
type Config struct {
	// BaseURL is the MES's base URL, e.g. http://mes:8081. Required.
	BaseURL string
	// Client sends the requests. Defaults to a client with no timeout of
	// its own (Timeout bounds each quote).
	Client *http.Client
	// Timeout bounds one quote, queueing at the MES included. Defaults to
	// DefaultTimeout.
	Timeout time.Duration
	// ModelURL turns a request's model key into the model_url the MES
	// is sent. Defaults to the key itself, which the MES resolves in the
	// model store it shares with ficus.
	ModelURL func(key string) string
}

// Calculator asks the MES for prices. It is safe for concurrent use.
type Calculator struct {
	endpoint string
	cfg      Config
}

// New returns a Calculator, or an error wrapping ErrInvalidConfig.
func New(cfg Config) (*Calculator, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: BaseURL %q: want the MES's http:// or https:// base URL", ErrInvalidConfig, cfg.BaseURL)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: Timeout %s is negative", ErrInvalidConfig, cfg.Timeout)
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.ModelURL == nil {
		cfg.ModelURL = func(key string) string { return key }
	}
	return &Calculator{endpoint: strings.TrimSuffix(cfg.BaseURL, "/") + "/api/v1/quotes", cfg: cfg}, nil
}

// Name returns "legacy".
func (c *Calculator) Name() string { return Name }

type quoteRequest struct {
	ModelURL string `json:"model_url"`
	Material string `json:"material"`
	Quantity int    `json:"quantity"`
}

type quoteAnswer struct {
	Price    string `json:"price"`
	Currency string `json:"currency"`
	QueuedMS int64  `json:"queued_ms"`
	CalcMS   int64  `json:"calc_ms"`
	Error    string `json:"error"`
}

var currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)

// Quote asks the MES to price req. A 4xx answer is an error wrapping
// pricing.ErrRejected with the MES's message; a 5xx answer, a timeout, a
// broken connection or an answer that is not a price are plain errors.
func (c *Calculator) Quote(ctx context.Context, req pricing.Request) (*pricing.Quote, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	body, err := json.Marshal(quoteRequest{ModelURL: c.cfg.ModelURL(req.ModelKey), Material: req.Material, Quantity: req.Quantity})
	if err != nil {
		return nil, fmt.Errorf("legacy quote: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("legacy quote: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	resp, err := c.cfg.Client.Do(hreq)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return nil, fmt.Errorf("legacy quote: the MES did not answer within %s: %w", c.cfg.Timeout, err)
		}
		return nil, fmt.Errorf("legacy quote: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("legacy quote: read the MES's answer: %w", err)
	}
	if len(raw) > maxAnswerBytes {
		return nil, fmt.Errorf("legacy quote: the MES's answer is larger than %d bytes", maxAnswerBytes)
	}
	var ans quoteAnswer
	jsonErr := json.Unmarshal(raw, &ans)
	switch {
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		msg := ans.Error
		if jsonErr != nil || msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		return nil, fmt.Errorf("%w: the MES answered %d: %s", pricing.ErrRejected, resp.StatusCode, truncate(msg, 500))
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("legacy quote: the MES answered %d: %s", resp.StatusCode, truncate(cmp.Or(ans.Error, http.StatusText(resp.StatusCode)), 500))
	case jsonErr != nil:
		return nil, fmt.Errorf("legacy quote: the MES's answer is not JSON: %v", jsonErr)
	}
	price, err := decimal.NewFromString(ans.Price)
	if err != nil || price.IsNegative() || price.Exponent() < -8 {
		return nil, fmt.Errorf("legacy quote: the MES answered price %q, not a decimal amount", truncate(ans.Price, 50))
	}
	if !currencyCode.MatchString(ans.Currency) {
		return nil, fmt.Errorf("legacy quote: the MES answered currency %q, not an ISO 4217 code", truncate(ans.Currency, 50))
	}
	return &pricing.Quote{
		Calculator: Name,
		ModelKey:   req.ModelKey,
		Material:   req.Material,
		Quantity:   req.Quantity,
		Price:      price,
		Currency:   ans.Currency,
	}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
