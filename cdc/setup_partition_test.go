package cdc

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ficuslabs/ficus/internal/pgtest"
)

// partitionedSchema is t2.parent (see pgtest.PartitionedSQL) and t2.nokey,
// list-partitioned, without a primary key.
const partitionedSchema = pgtest.PartitionedSQL + `
CREATE TABLE t2.nokey (id bigint, v bigint) PARTITION BY LIST (id);
CREATE TABLE t2.nokey_1 PARTITION OF t2.nokey FOR VALUES IN (1);
CREATE TABLE t2.nokey_rest PARTITION OF t2.nokey DEFAULT;`

// An existing publication of a partitioned table without
// publish_via_partition_root is reported by Status and fixed by Setup,
// which says so; a partition listed with its root is refused.
func TestSetupPartitionedTables(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	mustExec(t, db.Pool, partitionedSchema)
	suffix := strings.TrimPrefix(db.Name, "ficus_test_")
	slot, pub := "s_"+suffix, "p_"+suffix
	mustExec(t, db.Pool, "CREATE PUBLICATION "+pub+" FOR TABLE t2.parent")
	st, err := Status(ctx, db.Pool, slot, pub)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.PartitionNames, []string{"t2.parent"}) || !hasAction(st.Warnings, "publish_via_partition_root is off") {
		t.Errorf("status of a publication without publish_via_partition_root: %+v", st)
	}

	_, err = Setup(ctx, db.Pool, SetupConfig{Slot: slot, Publication: pub, Tables: []string{"t2.parent", "t2.p_eu"}})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "t2.p_eu is a partition of t2.parent, which is listed too") {
		t.Fatalf("setup of a partition with its root: %v", err)
	}
	r, err := Setup(ctx, db.Pool, SetupConfig{Slot: slot, Publication: pub, Tables: []string{"t2.parent"}})
	if err != nil {
		t.Fatal(err)
	}
	if !hasAction(r.Actions, "set publish_via_partition_root on publication "+pub) {
		t.Errorf("setup did not say it set publish_via_partition_root: %+v", r)
	}
	var viaRoot bool
	if err := db.Pool.QueryRow(ctx, "SELECT pubviaroot FROM pg_publication WHERE pubname = $1", pub).Scan(&viaRoot); err != nil || !viaRoot {
		t.Fatalf("pubviaroot = %v, %v", viaRoot, err)
	}
	if got := publishedTables(t, db.Pool, pub); !slices.Equal(got, []string{"t2.parent"}) {
		t.Errorf("publication publishes %v, want the root only", got)
	}
	if st, err = Status(ctx, db.Pool, slot, pub); err != nil || len(st.PartitionNames) > 0 || hasAction(st.Warnings, "publish_via_partition_root") {
		t.Errorf("status after setup: %+v, %v", st, err)
	}
	// The partition alone, now that its root is published: refused.
	_, err = Setup(ctx, db.Pool, SetupConfig{Slot: slot, Publication: pub, Tables: []string{"t2.p_us"}})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "which the publication already publishes") {
		t.Errorf("setup of a partition whose root is published: %v", err)
	}
	// A partition alone in a publication of its own: captured under its
	// own name, with a warning.
	r, err = Setup(ctx, db.Pool, SetupConfig{Slot: slot + "_eu", Publication: pub + "_eu", Tables: []string{"t2.p_eu"}})
	if err != nil || !hasAction(r.Warnings, "t2.p_eu is a partition of t2.parent: only its rows are captured") {
		t.Errorf("setup of a lone partition: %+v, %v", r, err)
	}
	t.Cleanup(func() {
		Teardown(context.Background(), db.Pool, slot, pub, true)
		Teardown(context.Background(), db.Pool, slot+"_eu", pub+"_eu", true)
	})

	// A partitioned table whose partitions have no key: each partition's
	// own replica identity counts, and --replica-identity-full sets it.
	_, err = Setup(ctx, db.Pool, SetupConfig{Slot: slot + "_nk", Publication: pub + "_nk", Tables: []string{"t2.nokey"}})
	if !errors.Is(err, ErrNoReplicaIdentity) || !strings.Contains(err.Error(), "its partition t2.nokey_1: it has no primary key") {
		t.Fatalf("setup of partitions without a key: %v", err)
	}
	r, err = Setup(ctx, db.Pool, SetupConfig{Slot: slot + "_nk", Publication: pub + "_nk", Tables: []string{"t2.nokey"}, ReplicaIdentityFull: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Teardown(context.Background(), db.Pool, slot+"_nk", pub+"_nk", true) })
	if want := []string{"t2.nokey_1", "t2.nokey_rest", "t2.nokey"}; !slices.Equal(r.ReplicaIdentityFullSet, want) {
		t.Errorf("REPLICA IDENTITY FULL set on %v, want %v", r.ReplicaIdentityFullSet, want)
	}
	var full int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relname IN ('nokey_1', 'nokey_rest') AND relreplident = 'f'").Scan(&full); err != nil || full != 2 {
		t.Errorf("%d partitions have REPLICA IDENTITY FULL (%v), want 2", full, err)
	}
}

// The snapshotter does not read a partitioned table whose changes the
// publication names after its partitions: its rows could overwrite newer
// changes at the consumer. It says what fixes it.
func TestSnapshotRefusesPartitionNames(t *testing.T) {
	t.Parallel()
	f := newSnapshotFixture(t, partitionedSchema, "t2.parent")
	f.request("t2.parent")
	s := newSnapshotter(f.reader(10))
	defer s.close()
	worked, err := s.runOnce(t.Context())
	if worked || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "publish_via_partition_root is off") ||
		!strings.Contains(err.Error(), "run ficus cdc setup again") {
		t.Fatalf("snapshot of a partitioned table published under its partitions' names: worked %v, err %v", worked, err)
	}
	if p := f.progress()["t2.parent"]; p.State != SnapshotPending || p.RowsRead != 0 {
		t.Fatalf("progress after the refusal: %+v", p)
	}
}
