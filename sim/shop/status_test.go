package shop

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/pricing"
)

func TestNext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status string
		want   string
		ok     bool
	}{
		{StatusNew, StatusPriced, true},
		{StatusPriced, StatusPaid, true},
		{StatusPaid, StatusInProduction, true},
		{StatusInProduction, StatusShipped, true},
		{StatusShipped, "", false},
		{"", "", false},
		{"cancelled", "", false},
		{"NEW", "", false},
	}
	for _, tt := range tests {
		got, ok := Next(tt.status)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Next(%q) = %q, %v; want %q, %v", tt.status, got, ok, tt.want, tt.ok)
		}
	}
}

func TestStatusesWalkInOrder(t *testing.T) {
	t.Parallel()
	var walked []string
	for s, ok := Statuses[0], true; ok; s, ok = Next(s) {
		walked = append(walked, s)
		if Index(s) != len(walked)-1 {
			t.Errorf("Index(%q) = %d, want %d", s, Index(s), len(walked)-1)
		}
	}
	if strings.Join(walked, ",") != "new,priced,paid,in_production,shipped" ||
		strings.Join(Statuses, ",") != strings.Join(walked, ",") {
		t.Errorf("walk from %q = %v, Statuses = %v", Statuses[0], walked, Statuses)
	}
	if Index("cancelled") != -1 {
		t.Errorf("Index(cancelled) = %d, want -1", Index("cancelled"))
	}
}

func TestDwellFor(t *testing.T) {
	t.Parallel()
	d := Dwell{Min: time.Second, Max: 3 * time.Second}
	seen := map[time.Duration]bool{}
	for id := int64(1); id <= 1000; id++ {
		for _, s := range statusOrder[:4] {
			got := dwellFor(d, id, s)
			if got < d.Min || got > d.Max {
				t.Fatalf("dwellFor(%v, %d, %s) = %v, out of range", d, id, s, got)
			}
			if again := dwellFor(d, id, s); again != got {
				t.Fatalf("dwellFor(%d, %s) not stable: %v then %v", id, s, got, again)
			}
			seen[got] = true
		}
	}
	if len(seen) < 3900 {
		t.Errorf("only %d distinct dwell times over 4000 draws: no jitter", len(seen))
	}
	if dwellFor(Dwell{Min: time.Second, Max: time.Second}, 7, StatusNew) != time.Second ||
		dwellFor(Dwell{Min: time.Second}, 7, StatusNew) != time.Second {
		t.Error("dwell without jitter should be exactly Min")
	}
	// The same order dwells differently in different statuses.
	if dwellFor(d, 42, StatusNew) == dwellFor(d, 42, StatusPriced) {
		t.Error("order 42 dwells exactly as long in new as in priced")
	}
}

// A CRM polling every two seconds misses a status that lives less than a
// second; with the defaults, priced should often be such a status.
func TestDefaultDwellOftenHidesPriced(t *testing.T) {
	t.Parallel()
	d := DefaultDwell()[StatusPriced]
	short := 0
	const n = 2000
	for id := int64(1); id <= n; id++ {
		if dwellFor(d, id, StatusPriced) < time.Second {
			short++
		}
	}
	if short < n/2 {
		t.Errorf("priced lasts under 1s for %d of %d orders, want most", short, n)
	}
	for _, s := range statusOrder[:4] {
		if _, ok := DefaultDwell()[s]; !ok {
			t.Errorf("DefaultDwell has no entry for %s", s)
		}
	}
}

func TestMergeDwell(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		custom  map[string]Dwell
		wantErr string
	}{
		{"nil takes defaults", nil, ""},
		{"override one", map[string]Dwell{StatusPaid: {Min: time.Minute, Max: time.Hour}}, ""},
		{"zero dwell is allowed", map[string]Dwell{StatusNew: {}}, ""},
		{"shipped is final", map[string]Dwell{StatusShipped: {Min: time.Second}}, "shipped is final"},
		{"unknown status", map[string]Dwell{"cancelled": {Min: time.Second}}, `"cancelled"`},
		{"negative", map[string]Dwell{StatusNew: {Min: -time.Second}}, "negative"},
		{"max below min", map[string]Dwell{StatusNew: {Min: 2 * time.Second, Max: time.Second}}, "below Min"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := mergeDwell(tt.custom)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrInvalidConfig mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := DefaultDwell()
			for s, d := range tt.custom {
				want[s] = d
			}
			if len(got) != len(want) {
				t.Fatalf("merged = %v, want %v", got, want)
			}
			for s, d := range want {
				if got[s] != d {
					t.Errorf("merged[%s] = %v, want %v", s, got[s], d)
				}
			}
		})
	}
}

func TestFakeCustomersAreDistinct(t *testing.T) {
	t.Parallel()
	emails := map[string]int{}
	for i := range 500 {
		c := fakeCustomer(i)
		if c.name == "" || !strings.HasSuffix(c.email, "@example.com") {
			t.Fatalf("fakeCustomer(%d) = %+v", i, c)
		}
		if j, dup := emails[c.email]; dup {
			t.Fatalf("fakeCustomer(%d) and (%d) share email %s", i, j, c.email)
		}
		emails[c.email] = i
	}
}

func TestDraftOrder(t *testing.T) {
	t.Parallel()
	rnd := rand.New(rand.NewPCG(1, 2))
	itemCounts := map[int]int{}
	withNote := 0
	for range 2000 {
		d := draftOrder(rnd.Float64, 5, CatalogueKeys())
		itemCounts[len(d.items)]++
		if d.note != "" {
			withNote++
		}
		var sum int64
		for _, it := range d.items {
			if it.quantity < 1 || it.quantity > 10 {
				t.Fatalf("quantity %d out of 1..10", it.quantity)
			}
			m := materialNamed(t, it.material)
			if it.unitPrice < m.minPrice || it.unitPrice > m.maxPrice {
				t.Fatalf("%s unit price %d outside %d..%d", it.material, it.unitPrice, m.minPrice, m.maxPrice)
			}
			if !slices.Contains(CatalogueKeys(), it.modelURL) {
				t.Fatalf("model url %q is not a catalogue key", it.modelURL)
			}
			sum += int64(it.quantity) * it.unitPrice
		}
		if d.totalMinor() != sum {
			t.Fatalf("totalMinor = %d, want %d", d.totalMinor(), sum)
		}
	}
	for n := 1; n <= 4; n++ {
		if itemCounts[n] == 0 {
			t.Errorf("no order with %d items in 2000 drafts: %v", n, itemCounts)
		}
	}
	if len(itemCounts) != 4 {
		t.Errorf("item counts outside 1..4: %v", itemCounts)
	}
	if withNote == 0 || withNote == 2000 {
		t.Errorf("%d of 2000 orders have a note, want some", withNote)
	}
}

// A Rand that strays to its bounds must still give a valid order.
func TestDraftOrderAtBounds(t *testing.T) {
	t.Parallel()
	for _, v := range []float64{0, 0.9999999999} {
		d := draftOrder(func() float64 { return v }, 3, CatalogueKeys())
		if n := len(d.items); n < 1 || n > 4 {
			t.Errorf("Rand=%v: %d items", v, n)
		}
		for _, it := range d.items {
			if it.quantity < 1 || it.quantity > 10 {
				t.Errorf("Rand=%v: quantity %d", v, it.quantity)
			}
		}
	}
	if got := intn(func() float64 { return 1.5 }, 4); got != 3 {
		t.Errorf("intn with Rand 1.5 = %d, want 3", got)
	}
	if got := intn(func() float64 { return -1 }, 4); got != 0 {
		t.Errorf("intn with Rand -1 = %d, want 0", got)
	}
}

func materialNamed(t *testing.T, name string) material {
	t.Helper()
	for _, m := range materials {
		if m.name == name {
			return m
		}
	}
	t.Fatalf("unknown material %q", name)
	return material{}
}

func TestWriteCatalogue(t *testing.T) {
	t.Parallel()
	models, err := pricing.OpenStore(t.Context(), "mem://", pricing.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer models.Close()
	keys, err := WriteCatalogue(t.Context(), models)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, CatalogueKeys()) {
		t.Errorf("wrote %v, CatalogueKeys says %v", keys, CatalogueKeys())
	}
	for _, k := range keys {
		m, err := models.Load(t.Context(), k)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if m.Analysis.Volume <= 0 {
			t.Errorf("%s: volume %v", k, m.Analysis.Volume)
		}
	}
}
