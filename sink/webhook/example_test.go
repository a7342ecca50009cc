package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http/httptest"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sim/crm"
	"github.com/ficuslabs/ficus/sink/webhook"
)

// A webhook sink delivers row changes to the simulated CRM; sending the
// same events again is harmless, since the CRM deduplicates by id.
func Example() {
	c, err := crm.New(crm.Config{Mode: crm.ModeWebhook})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()

	s, err := webhook.New(webhook.Config{URL: srv.URL + "/events", Lanes: 2, MaxBatchEvents: 50})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(context.Background())

	var batch []cloudevent.Event
	for i, status := range []string{"new", "priced", "paid"} {
		batch = append(batch, cloudevent.Event{
			SpecVersion: cloudevent.SpecVersion,
			ID:          fmt.Sprintf("00000000016B3748-%06d", i),
			Source:      "ficus-cdc://shop/ficus",
			Type:        "dev.ficus.cdc.update",
			Subject:     "shop.orders/42",
			Extensions:  map[string]any{"partitionkey": "shop.orders/42"},
			Data:        json.RawMessage(fmt.Sprintf(`{"op":"update","table":"shop.orders","new":{"id":42,"status":%q}}`, status)),
		})
	}
	for range 2 {
		if err := s.Send(context.Background(), batch); err != nil {
			log.Fatal(err)
		}
	}
	st := c.Stats()
	fmt.Printf("unique %d, duplicates %d, transitions %d, gaps %d\n", st.Unique, st.Duplicates, st.Transitions, st.Gaps)
	// Output: unique 3, duplicates 3, transitions 2, gaps 0
}
