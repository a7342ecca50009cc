package buckets

import (
	"slices"
	"testing"
)

func TestBoundsAscend(t *testing.T) {
	t.Parallel()
	for name, f := range map[string]func() []float64{
		"Request": Request, "Fast": Fast, "Delivery": Delivery, "Wait": Wait,
		"Run": Run, "Rows": Rows, "Bytes": Bytes,
	} {
		b := f()
		if len(b) < 5 || !slices.IsSorted(b) || len(slices.Compact(slices.Clone(b))) != len(b) {
			t.Errorf("%s() = %v: want at least five strictly ascending bounds", name, b)
		}
		b[0] = -1
		if f()[0] == -1 {
			t.Errorf("%s() shares its slice between calls", name)
		}
	}
	if b := Bytes(); b[0] != 1024 || b[len(b)-1] != 256<<20 {
		t.Errorf("Bytes() = %v, want 1 KiB .. 256 MiB", b)
	}
}
