package shop

import (
	"errors"
	"testing"
)

// Status events come from the network: ParseStatusEvent accepts MES
// status events and refuses anything else with ErrBadStatusEvent, never
// panicking.
func FuzzParseStatusEvent(f *testing.F) {
	for _, s := range []string{
		`{"specversion":"1.0","id":"7-scheduled","source":"ficus-sim-mes","type":"ficus.sim.mes.order.status","subject":"12","data":{"id":7,"client_ref":"12","status":"scheduled"}}`,
		`{"specversion":"1.0","id":"1","source":"x","type":"ficus.sim.mes.order.status","data":{"client_ref":1,"status":"x"}}`,
		`{"specversion":"1.0","id":"1","source":"x","type":"other","data":{}}`,
		`{"specversion":"1.0","id":"1","source":"x","type":"ficus.sim.mes.order.status","data_base64":"e30="}`,
		`{}`, `[]`, ``, `null`, `{"specversion":"1.0"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ref, status, err := ParseStatusEvent(b)
		if err != nil {
			if !errors.Is(err, ErrBadStatusEvent) {
				t.Fatalf("error %v does not wrap ErrBadStatusEvent", err)
			}
			return
		}
		_, _ = ref, status
	})
}
