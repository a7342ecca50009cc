package cdc

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

func validateSlotName(s string) error {
	if s == "" {
		return fmt.Errorf("%w: slot name is empty (choose one, e.g. ficus_shop)", ErrInvalidConfig)
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("%w: slot name %q is longer than %d characters", ErrInvalidConfig, s, maxNameLen)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return fmt.Errorf("%w: slot name %q: use only lowercase letters, digits and underscores", ErrInvalidConfig, s)
		}
	}
	return nil
}

func validatePublicationName(s string) error {
	if s == "" {
		return fmt.Errorf("%w: publication name is empty (choose one, e.g. ficus_shop)", ErrInvalidConfig)
	}
	_, rest, err := parseIdent(s)
	if err == nil && rest != "" {
		err = fmt.Errorf("unexpected %q after the name", rest)
	}
	if err != nil {
		return fmt.Errorf("%w: publication name %q: %v", ErrInvalidConfig, s, err)
	}
	return nil
}

// validateSlotAndPublication checks slot and, unless it is empty,
// publication, and joins what is wrong with either.
func validateSlotAndPublication(slot, publication string) error {
	errs := []error{validateSlotName(slot)}
	if publication != "" {
		errs = append(errs, validatePublicationName(publication))
	}
	return errors.Join(errs...)
}

// publicationIdent returns the publication's name as stored in the catalog.
// It must be called on a validated name.
func publicationIdent(s string) string {
	name, _, _ := parseIdent(s)
	return name
}

// qualifiedTable is a schema-qualified table name as stored in the catalog.
type qualifiedTable struct{ Schema, Name string }

// String writes the name the way a user types it: schema.table, with a
// part double-quoted only when it is not a simple lowercase identifier.
func (t qualifiedTable) String() string { return displayIdent(t.Schema) + "." + displayIdent(t.Name) }

// sql is the name quoted for use in a statement.
func (t qualifiedTable) sql() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// parseTableName reads "schema.table"; each part is a simple lowercase
// identifier or a double-quoted one.
func parseTableName(s string) (qualifiedTable, error) {
	fail := func(why string) (qualifiedTable, error) {
		return qualifiedTable{}, fmt.Errorf("%w: table %q: %s", ErrInvalidConfig, s, why)
	}
	schema, rest, err := parseIdent(s)
	if err != nil {
		return fail(err.Error())
	}
	if rest == "" {
		return fail("give the schema too, as schema.table (e.g. public." + displayIdent(schema) + ")")
	}
	if rest[0] != '.' {
		return fail(fmt.Sprintf("unexpected %q after %s (write schema.table)", rest, displayIdent(schema)))
	}
	name, rest, err := parseIdent(rest[1:])
	if err != nil {
		return fail(err.Error())
	}
	if rest != "" {
		return fail(fmt.Sprintf("unexpected %q after the table name (write schema.table)", rest))
	}
	return qualifiedTable{Schema: schema, Name: name}, nil
}

// parseIdent reads one identifier at the start of s: a simple one
// ([a-z_][a-z0-9_$]*, as PostgreSQL stores an unquoted name) or a
// double-quoted one in which "" stands for a quote. It returns the name as
// stored in the catalog and what follows it.
func parseIdent(s string) (name, rest string, err error) {
	if s == "" {
		return "", "", errors.New("empty name")
	}
	if s[0] == '"' {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch c := s[i]; {
			case c == '"' && i+1 < len(s) && s[i+1] == '"':
				b.WriteByte('"')
				i++
			case c == '"':
				name = b.String()
				if name == "" {
					return "", "", errors.New(`empty quoted name ""`)
				}
				if strings.IndexByte(name, 0) >= 0 {
					return "", "", errors.New("name contains a NUL byte")
				}
				if len(name) > maxNameLen {
					return "", "", fmt.Errorf("name is longer than %d bytes", maxNameLen)
				}
				return name, s[i+1:], nil
			default:
				b.WriteByte(c)
			}
		}
		return "", "", errors.New("unterminated quoted name (close it with \")")
	}
	i := 0
	for i < len(s) && isIdentByte(s[i], i == 0) {
		i++
	}
	if i == 0 {
		if c := s[0]; c >= 'A' && c <= 'Z' {
			return "", "", errors.New(`unquoted names are lowercase in PostgreSQL: write the name in lowercase, or double-quote a mixed-case name ("Orders")`)
		}
		return "", "", fmt.Errorf("a name starts with a lowercase letter or _, not %q (double-quote other names)", s[:1])
	}
	if i < len(s) && s[i] >= 'A' && s[i] <= 'Z' {
		return "", "", errors.New(`unquoted names are lowercase in PostgreSQL: write the name in lowercase, or double-quote a mixed-case name ("Orders")`)
	}
	if i > maxNameLen {
		return "", "", fmt.Errorf("name is longer than %d bytes", maxNameLen)
	}
	return s[:i], s[i:], nil
}

func isIdentByte(c byte, first bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c == '_':
		return true
	case c >= '0' && c <= '9', c == '$':
		return !first
	}
	return false
}

// displayIdent writes a catalog name as a user types it: bare when it is a
// simple lowercase identifier, double-quoted otherwise.
func displayIdent(name string) string {
	if n, rest, err := parseIdent(name); err == nil && rest == "" && n == name {
		return name
	}
	return pgx.Identifier{name}.Sanitize()
}
