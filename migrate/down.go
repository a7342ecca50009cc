package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/riverqueue/river/rivermigrate"
)

// ErrUnknownSet means Down was given a set name that is not one of Sets.
var ErrUnknownSet = errors.New("migrate: unknown migration set")

// Sets names the migration sets, in the order Up applies them: "core"
// (ficus's own state), "cdc", "cutover", "river" (the pricing fleet's job
// queue), "pricing" and "outbox".
var Sets = []string{"core", "cdc", "cutover", "river", "pricing", "outbox"}

func setByName(name string) (set, error) {
	for i, st := range []set{coreSet, cdcSet, cutoverSet, riverSet, pricingSet, outboxSet} {
		if Sets[i] == name {
			return st, nil
		}
	}
	return set{}, fmt.Errorf("%w %q: one of %s", ErrUnknownSet, name, strings.Join(Sets, ", "))
}

// Down rolls the named set (one of Sets) back until version is its last
// applied migration, newest first, each in a transaction of its own, and
// returns what it rolled back, in that order. Version 0 rolls back every
// migration of the set; a version at or above the set's current one
// changes nothing. A rollback drops what the rolled-back migrations
// created, data included: run it only after stopping, or rolling back,
// the ficus release that needs those migrations.
func Down(ctx context.Context, pool *pgxpool.Pool, setName string, version int64) ([]Applied, error) {
	st, err := setByName(setName)
	if err != nil {
		return nil, err
	}
	if version < 0 {
		return nil, fmt.Errorf("migrate down: version %d: must be 0 or more", version)
	}
	if st == riverSet {
		return downRiver(ctx, pool, version)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	var exists bool
	if err := db.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", st.versionTable).Scan(&exists); err != nil {
		return nil, fmt.Errorf("migrate down: %w", err)
	}
	if !exists {
		return nil, nil // nothing was ever applied
	}
	p, err := provider(db, st)
	if err != nil {
		return nil, err
	}
	results, err := p.DownTo(ctx, version)
	var out []Applied
	for _, r := range results {
		if r.Error == nil {
			out = append(out, Applied{Version: r.Source.Version, Name: st.name(r.Source), Duration: r.Duration})
		}
	}
	if err != nil {
		return out, fmt.Errorf("migrate down %s to %d: %w", setName, version, err)
	}
	return out, nil
}

// downRiver rolls River's migrations back to version (0: all of them).
func downRiver(ctx context.Context, pool *pgxpool.Pool, version int64) ([]Applied, error) {
	current, err := statusRiver(ctx, pool)
	if err != nil {
		return nil, err
	}
	last := int64(0)
	for _, m := range current {
		if m.Applied {
			last = max(last, m.Version)
		}
	}
	if version >= last {
		return nil, nil
	}
	target := int(version)
	if version == 0 {
		target = -1 // River's "every migration"
	}
	if version > 0 && !slices.ContainsFunc(current, func(m Migration) bool { return m.Version == version }) {
		return nil, fmt.Errorf("migrate down river: version %d does not exist", version)
	}
	m, err := riverMigrator(pool)
	if err != nil {
		return nil, err
	}
	res, err := m.Migrate(ctx, rivermigrate.DirectionDown, &rivermigrate.MigrateOpts{TargetVersion: target})
	if err != nil {
		return nil, fmt.Errorf("migrate down river to %d: %w", version, err)
	}
	out := make([]Applied, 0, len(res.Versions))
	for _, v := range res.Versions {
		out = append(out, Applied{Version: int64(v.Version), Name: riverSet.prefix + v.Name, Duration: v.Duration})
	}
	return out, nil
}
