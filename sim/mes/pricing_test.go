package mes_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/solids"
	"github.com/ficuslabs/ficus/sim/mes"
)

// volumeEstimator is a test-local estimator: material from the volume,
// a minute of machine time per cm³.
type volumeEstimator struct{}

func (volumeEstimator) Estimate(_ context.Context, m *pricing.Model, mat pricing.Material) (pricing.Estimate, error) {
	cm3 := m.Analysis.Volume / 1000
	return pricing.Estimate{PrintTime: time.Duration(cm3 * float64(time.Minute)), FilamentGrams: cm3 * mat.Density}, nil
}

// newModels returns an in-memory model store holding bracket.stl, an
// L-bracket, and tube.stl.
func newModels(t testing.TB) *pricing.Store {
	t.Helper()
	s, err := pricing.OpenStore(context.Background(), "mem://", pricing.StoreConfig{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	put(t, s, "bracket.stl", must(solids.LBracket(60, 40, 25, 4)))
	put(t, s, "tube.stl", must(solids.Tube(40, 2, 50, 48)))
	return s
}

func put(t testing.TB, s *pricing.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, data); err != nil {
		t.Fatal(err)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestQuotePricesTheModelInTheStore(t *testing.T) {
	t.Parallel()
	models := newModels(t)
	srv, base := start(t, mes.Config{Models: models})
	calc, err := pricing.NewCalculator(pricing.CalculatorConfig{Name: "oracle", Store: models, PriceList: pricing.DefaultPriceList(), Estimator: volumeEstimator{}})
	if err != nil {
		t.Fatal(err)
	}
	// A model written after the MES started is read from the store, by
	// key or by the store's own URL.
	put(t, models, "later/box.stl", must(solids.Box(100, 80, 60)))
	for _, tt := range []struct{ modelURL, key, material string }{
		{"bracket.stl", "bracket.stl", "PETG"},
		{"tube.stl", "tube.stl", "pla"},
		{models.URL("later/box.stl"), "later/box.stl", "PA12"},
	} {
		body := `{"model_url": "` + tt.modelURL + `", "material": "` + tt.material + `", "quantity": 12}`
		q := decode[mes.Quote](t, mustSend(t, http.MethodPost, base+"/api/v1/quotes", body, http.StatusOK))
		want, err := calc.Quote(t.Context(), pricing.Request{ModelKey: tt.key, Material: tt.material, Quantity: 12})
		if err != nil {
			t.Fatal(err)
		}
		if q.Price != want.Price.StringFixed(2) || q.Currency != want.Currency {
			t.Errorf("%s: MES priced %s %s, the same calculator %s %s", tt.modelURL, q.Price, q.Currency, want.Price, want.Currency)
		}
	}
	if st := srv.Stats(); st.QuotesComputed != 3 {
		t.Errorf("quotes_computed = %d, want 3", st.QuotesComputed)
	}
}

func TestQuoteRefusesModelsItCannotPrice(t *testing.T) {
	t.Parallel()
	models := newModels(t)
	put(t, models, "garbage.stl", []byte("solid nothing\nendsolid\n"))
	put(t, models, "huge.stl", must(solids.Box(400, 400, 400)))
	g := newGate(t)
	srv, base := start(t, mes.Config{Models: models, Sleep: g.Sleep})
	for _, tt := range []struct {
		modelURL, material string
		status             int
		says               string
	}{
		{"s3://models/bracket.stl", "PLA", http.StatusBadRequest, "scheme"},
		{"../bracket.stl", "PLA", http.StatusBadRequest, "'..'"},
		{"/etc/passwd", "PLA", http.StatusBadRequest, "empty path segment"},
		{"a%2F..%2Fb.stl", "PLA", http.StatusBadRequest, "'%'"},
		{"missing.stl", "PLA", http.StatusUnprocessableEntity, "not in the model store"},
		{"garbage.stl", "PLA", http.StatusUnprocessableEntity, "garbage.stl"},
		{"huge.stl", "PLA", http.StatusUnprocessableEntity, "build volume"},
		{"bracket.stl", "steel", http.StatusUnprocessableEntity, `material "steel"`},
	} {
		body := `{"model_url": "` + tt.modelURL + `", "material": "` + tt.material + `", "quantity": 1}`
		r := mustSend(t, http.MethodPost, base+"/api/v1/quotes", body, tt.status)
		if msg := errorText(t, r); !strings.Contains(msg, tt.says) {
			t.Errorf("%s in %s: error %q does not say %q", tt.modelURL, tt.material, msg, tt.says)
		}
	}
	if n := len(g.calls); n != 0 {
		t.Errorf("%d calculations took their time for quotes that cannot be priced", n)
	}
	if st := srv.Stats(); st.QuotesComputed != 0 || st.QuotesWaiting != 0 || st.QuotesInProgress != 0 {
		t.Errorf("stats %+v, want nothing computed or left in the queue", st)
	}
}

func TestNewRequiresModelsAndEstimator(t *testing.T) {
	t.Parallel()
	for _, cfg := range []mes.Config{{}, {Models: newModels(t)}, {Estimator: volumeEstimator{}}} {
		if _, err := mes.New(cfg); !errors.Is(err, mes.ErrInvalidConfig) {
			t.Errorf("New without models or estimator: err = %v, want ErrInvalidConfig", err)
		}
	}
}
