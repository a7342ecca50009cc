package live

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Board is the part of a Grafana dashboard (schema as in
// dashboards/grafana/*.json) that rendering needs.
type Board struct {
	Title     string
	Panels    []Panel
	Variables []Variable
}

// Panel is one graph of a board; rows are flattened away.
type Panel struct {
	ID    int
	Title string
	// Type is Grafana's panel type (timeseries, stat, gauge, ...); every
	// type with queries is drawn as lines over time.
	Type string
	// Unit is fieldConfig.defaults.unit (s, bytes, percentunit, reqps, ...).
	Unit    string
	Queries []PanelQuery
}

// PanelQuery is one target of a panel.
type PanelQuery struct {
	RefID string
	Expr  string
	// Legend is legendFormat, with {{label}} placeholders.
	Legend string
}

// Variable is a template variable of a board.
type Variable struct {
	Name string
	Type string
	// Value is what the variable stands for when the board is rendered:
	// its allValue (or ".*") when it has "All", else its current value.
	Value string
}

// Limits on what ParseBoard accepts from a board file.
const (
	maxBoardBytes = 8 << 20
	maxRowDepth   = 4
)

type rawBoard struct {
	Title      string     `json:"title"`
	Panels     []rawPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			IncludeAll bool            `json:"includeAll"`
			AllValue   string          `json:"allValue"`
			Current    json.RawMessage `json:"current"`
		} `json:"list"`
	} `json:"templating"`
}

type rawPanel struct {
	ID          int    `json:"id"`
	Title       string `json:"title"`
	Type        string `json:"type"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID        string `json:"refId"`
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
		Hide         bool   `json:"hide"`
	} `json:"targets"`
	Panels []rawPanel `json:"panels"`
}

// ParseBoard reads a Grafana dashboard's JSON. Panels inside rows (also
// collapsed ones) are listed in order; panels without a query are left out.
func ParseBoard(data []byte) (Board, error) {
	if len(data) > maxBoardBytes {
		return Board{}, fmt.Errorf("%w: %d bytes, more than %d", ErrBoard, len(data), maxBoardBytes)
	}
	var raw rawBoard
	if err := json.Unmarshal(data, &raw); err != nil {
		return Board{}, fmt.Errorf("%w: %w", ErrBoard, err)
	}
	b := Board{Title: raw.Title}
	for _, v := range raw.Templating.List {
		if v.Name == "" {
			continue
		}
		b.Variables = append(b.Variables, Variable{Name: v.Name, Type: v.Type, Value: variableValue(v.IncludeAll, v.AllValue, v.Current)})
	}
	var walk func(ps []rawPanel, depth int) error
	walk = func(ps []rawPanel, depth int) error {
		if depth > maxRowDepth {
			return fmt.Errorf("%w: panels nested more than %d deep", ErrBoard, maxRowDepth)
		}
		for _, p := range ps {
			panel := Panel{ID: p.ID, Title: p.Title, Type: p.Type, Unit: p.FieldConfig.Defaults.Unit}
			for _, t := range p.Targets {
				if t.Hide || strings.TrimSpace(t.Expr) == "" {
					continue
				}
				panel.Queries = append(panel.Queries, PanelQuery{RefID: t.RefID, Expr: t.Expr, Legend: t.LegendFormat})
			}
			if len(panel.Queries) > 0 {
				b.Panels = append(b.Panels, panel)
			}
			if err := walk(p.Panels, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(raw.Panels, 0); err != nil {
		return Board{}, err
	}
	return b, nil
}

// variableValue is what a variable stands for when every value is shown.
func variableValue(includeAll bool, allValue string, current json.RawMessage) string {
	if includeAll {
		if allValue != "" {
			return allValue
		}
		return ".*"
	}
	var cur struct {
		Value json.RawMessage `json:"value"`
	}
	if len(current) == 0 || json.Unmarshal(current, &cur) != nil || len(cur.Value) == 0 {
		return ".*"
	}
	var one string
	if json.Unmarshal(cur.Value, &one) == nil && one != "" && one != "$__all" {
		return one
	}
	var many []string
	if json.Unmarshal(cur.Value, &many) == nil && len(many) > 0 && many[0] != "$__all" {
		return strings.Join(many, "|")
	}
	return ".*"
}

// varRef matches $name, ${name}, ${name:format} and [[name]].
var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[A-Za-z]+)?\}|\$([A-Za-z_][A-Za-z0-9_]*)|\[\[([A-Za-z_][A-Za-z0-9_]*)\]\]`)

// Expand replaces the template variables in a panel query: Grafana's
// $__interval (step), $__rate_interval, $__range, and the board's own
// variables (vars first, then the board's values). An unknown variable
// becomes ".*".
func (b Board) Expand(expr string, vars map[string]string, step, rateInterval, rng time.Duration) string {
	return varRef.ReplaceAllStringFunc(expr, func(m string) string {
		sub := varRef.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		switch name {
		case "__interval":
			return model.Duration(step).String()
		case "__rate_interval":
			return model.Duration(rateInterval).String()
		case "__range":
			return model.Duration(rng).String()
		case "__interval_ms":
			return fmt.Sprint(step.Milliseconds())
		case "__range_s":
			return fmt.Sprint(int64(rng.Seconds()))
		}
		if v, ok := vars[name]; ok {
			return v
		}
		for _, v := range b.Variables {
			if v.Name == name {
				return v.Value
			}
		}
		return ".*"
	})
}
