package dashboards

import (
	"regexp"
	"strings"
)

// selector is one metric a query names, with the label names it matches on.
type selector struct {
	name   string
	labels []string
}

// query is what a PromQL or MetricsQL expression refers to.
type query struct {
	// selectors are the ficus_, go_ and process_ series the query reads.
	selectors []selector
	// grouping holds the label names of by, without, on, ignoring,
	// group_left and group_right clauses.
	grouping []string
}

var (
	// queryMetricRE is what a metric of ficus, of the Go runtime or of the
	// process is named like.
	queryMetricRE = regexp.MustCompile(`^(?:ficus|go|process)_[a-z0-9_]+$`)
	matcherRE     = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	identRE       = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// groupingKeywords introduce a parenthesised list of label names.
func groupingKeyword(word string) bool {
	switch word {
	case "by", "without", "on", "ignoring", "group_left", "group_right":
		return true
	}
	return false
}

// parseQuery finds the metrics and label names a PromQL or MetricsQL
// expression uses. It does not validate the expression: it reads names,
// skipping string literals, comments, range and subquery brackets, and the
// label names inside selectors and grouping clauses, so that a label value
// or a label name is never taken for a metric.
func parseQuery(expr string) query {
	s := blankStrings(expr)
	var q query
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return q
			}
			i += end + 1
		case c == '{':
			// A selector without a metric name, e.g. {__name__=~"..."}.
			_, n := readBraces(s[i:])
			i += n
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (isIdentByte(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentByte(c):
			word := identRE.FindString(s[i:])
			i += len(word)
			rest := strings.TrimLeft(s[i:], " \t\r\n")
			skipped := len(s[i:]) - len(rest)
			switch {
			case groupingKeyword(word) && strings.HasPrefix(rest, "("):
				end := strings.IndexByte(rest, ')')
				if end < 0 {
					return q
				}
				q.grouping = append(q.grouping, strings.FieldsFunc(rest[1:end], func(r rune) bool {
					return r == ',' || r == ' ' || r == '\t' || r == '\r' || r == '\n'
				})...)
				i += skipped + end + 1
			case queryMetricRE.MatchString(word) && !strings.HasPrefix(rest, "("):
				sel := selector{name: word}
				if strings.HasPrefix(rest, "{") {
					labels, n := readBraces(rest)
					sel.labels = labels
					i += skipped + n
				}
				q.selectors = append(q.selectors, sel)
			}
		default:
			i++
		}
	}
	return q
}

// readBraces reads the label matchers of a selector, s starting with "{",
// and returns their label names and the length of the selector.
func readBraces(s string) ([]string, int) {
	end := strings.IndexByte(s, '}')
	n := end + 1
	if end < 0 { // unterminated: the rest is the selector
		end, n = len(s), len(s)
	}
	var labels []string
	for _, m := range matcherRE.FindAllStringSubmatch(s[1:end], -1) {
		labels = append(labels, m[1])
	}
	return labels, n
}

func isIdentByte(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// blankStrings empties the string literals of expr (keeping the quotes) and
// removes its comments.
func blankStrings(expr string) string {
	var b strings.Builder
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch c {
		case '"', '\'', '`':
			b.WriteByte(c)
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j < len(expr) {
				b.WriteByte(c)
			}
			i = j
		case '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
			b.WriteByte('\n')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
