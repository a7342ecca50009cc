package orders

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxConfigBytes bounds a config file; a larger one is refused unread.
const maxConfigBytes = 1 << 20

// LoadConfig reads the view's configuration from a YAML file (see
// ParseConfig).
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return Config{}, fmt.Errorf("%w: read %s: %v", ErrInvalidConfig, path, err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// fileConfig is the YAML form of Config (docs/orders.md, Configuration).
type fileConfig struct {
	DriftGrace   *duration                      `yaml:"drift_grace"`
	Reference    string                         `yaml:"reference"`
	Mirror       string                         `yaml:"mirror"`
	Sources      []fileSource                   `yaml:"sources"`
	StatusLimits map[string]map[string]duration `yaml:"status_limits"`
}

type fileSource struct {
	Name           string            `yaml:"name"`
	Table          string            `yaml:"table"`
	IDColumn       string            `yaml:"id_column"`
	RefColumn      string            `yaml:"ref_column"`
	StatusColumn   string            `yaml:"status_column"`
	CreatedColumn  string            `yaml:"created_column"`
	PromisedColumn string            `yaml:"promised_column"`
	Common         map[string]string `yaml:"common"`
	Final          []string          `yaml:"final"`
}

// duration is a positive time span in YAML: a Go duration ("90m",
// "36h") or whole days ("21d"); its errors name the line.
type duration time.Duration

// maxDays bounds "Nd" so that it fits a time.Duration.
const maxDays = 100_000

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as 36h or 21d", n.Line)
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*d = duration(v)
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > maxDays {
			return 0, fmt.Errorf("%q: want whole days from 1 to %d, such as 21d", s, maxDays)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: use a number with a unit, such as 90m, 36h or 21d", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: a duration must be positive", s)
	}
	return d, nil
}

// ParseConfig reads the view's configuration from YAML:
//
//	drift_grace: 5m                 # Config.DriftGrace
//	reference: shop                 # Config.Reference
//	mirror: mes                     # Config.Mirror
//	sources:                        # Config.Sources; left out: DefaultSources()
//	  - name: shop
//	    table: shop.orders
//	    promised_column: promised_at
//	    common: {new: open, priced: open, paid: open}
//	    final: [shipped]
//	status_limits:                  # Config.StatusLimits; left out: DefaultStatusLimits()
//	  shop: {new: 1d, priced: 7d}
//
// Unknown keys are errors, and every error names its line; the result is
// validated as NewView and NewSink would. Errors wrap ErrInvalidConfig.
func ParseConfig(data []byte) (Config, error) {
	if len(data) > maxConfigBytes {
		return Config{}, fmt.Errorf("%w: the file is larger than %d bytes", ErrInvalidConfig, maxConfigBytes)
	}
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%w: %v", ErrInvalidConfig, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%w: the file holds more than one YAML document", ErrInvalidConfig)
	}
	cfg := Config{Reference: fc.Reference, Mirror: fc.Mirror}
	if fc.DriftGrace != nil {
		cfg.DriftGrace = time.Duration(*fc.DriftGrace)
	}
	if fc.Sources != nil {
		if len(fc.Sources) == 0 {
			return Config{}, fmt.Errorf("%w: sources is empty; leave it out for the shop's and the MES's orders", ErrInvalidConfig)
		}
		cfg.Sources = make([]Source, len(fc.Sources))
		for i, s := range fc.Sources {
			cfg.Sources[i] = Source(s)
		}
	}
	if fc.StatusLimits != nil {
		cfg.StatusLimits = make(map[string]map[string]time.Duration, len(fc.StatusLimits))
		for src, limits := range fc.StatusLimits {
			m := make(map[string]time.Duration, len(limits))
			for st, d := range limits {
				m[st] = time.Duration(d)
			}
			cfg.StatusLimits[src] = m
		}
	}
	if _, err := cfg.withDefaults(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}
