package dashboards

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// docRow is one metric described in a table of docs/metrics.md:
//
//	| metric | type | labels | meaning | what to look for |
type docRow struct {
	name   string
	kind   string
	labels []string // sorted
	line   int
}

// doc is what the tests read from docs/metrics.md.
type doc struct {
	rows map[string]docRow
	// anchors holds the GitHub anchor of every heading.
	anchors map[string]bool
	// runbooks holds the anchors of the level-3 headings of the Runbooks
	// section, in order.
	runbooks []string
	// problems lists rows that do not follow the table's shape.
	problems []string
}

var (
	docCellMetricRE = regexp.MustCompile("^`((?:ficus|go|process)_[a-z0-9_]+)`$")
	docLabelRE      = regexp.MustCompile("`([a-zA-Z_][a-zA-Z0-9_]*)`")
	headingRE       = regexp.MustCompile(`^(#{1,6})\s+(.+?)\s*#*\s*$`)
)

// metricKinds are the words the type column may hold.
func metricKind(s string) bool {
	switch s {
	case "counter", "gauge", "histogram", "summary":
		return true
	}
	return false
}

// parseDoc reads the metric tables, headings and runbooks of a Markdown
// page.
func parseDoc(md string) doc {
	d := doc{rows: map[string]docRow{}, anchors: map[string]bool{}}
	seen := map[string]int{}
	fenced, section := false, ""
	for i, line := range strings.Split(md, "\n") {
		n := i + 1
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		if m := headingRE.FindStringSubmatch(line); m != nil {
			anchor := slug(m[2])
			if k := seen[anchor]; k > 0 {
				seen[anchor]++
				anchor = fmt.Sprintf("%s-%d", anchor, k)
			} else {
				seen[anchor] = 1
			}
			d.anchors[anchor] = true
			switch len(m[1]) {
			case 1, 2:
				section = m[2]
			case 3:
				if section == "Runbooks" {
					d.runbooks = append(d.runbooks, anchor)
				}
			}
			continue
		}
		if !strings.HasPrefix(trimmed, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(trimmed, "|"), "|")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		m := docCellMetricRE.FindStringSubmatch(cells[0])
		if m == nil {
			continue // header, separator, or a table of something else
		}
		if len(cells) != 5 {
			d.problems = append(d.problems, fmt.Sprintf(
				"docs/metrics.md:%d: %s: want 5 columns (metric, type, labels, meaning, what to look for), got %d", n, m[1], len(cells)))
			continue
		}
		row := docRow{name: m[1], kind: cells[1], line: n}
		if !metricKind(row.kind) {
			d.problems = append(d.problems, fmt.Sprintf(
				"docs/metrics.md:%d: %s: type %q is not counter, gauge, histogram or summary", n, row.name, row.kind))
		}
		for _, l := range docLabelRE.FindAllStringSubmatch(cells[2], -1) {
			row.labels = append(row.labels, l[1])
		}
		slices.Sort(row.labels)
		if cells[3] == "" || cells[4] == "" {
			d.problems = append(d.problems, fmt.Sprintf(
				"docs/metrics.md:%d: %s: say what it means and what to look for", n, row.name))
		}
		if prev, ok := d.rows[row.name]; ok {
			d.problems = append(d.problems, fmt.Sprintf(
				"docs/metrics.md:%d: %s is already described at line %d", n, row.name, prev.line))
			continue
		}
		d.rows[row.name] = row
	}
	return d
}

// slug returns the anchor GitHub gives a heading: lower case, punctuation
// dropped, spaces as hyphens.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}
