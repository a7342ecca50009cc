package shop

import (
	"fmt"
	"time"
)

// Dwell is how long an order stays in one status before it moves on: each
// order draws its own time, uniformly between Min and Max.
type Dwell struct {
	// Min is the shortest stay.
	Min time.Duration
	// Max is the longest stay; zero or equal to Min means every order stays
	// exactly Min.
	Max time.Duration
}

// DefaultDwell returns the dwell times used for statuses a Config leaves out.
// They make an order's life last 5 to 18 seconds, and an order is priced for
// less than a second more often than not: the customer pays right after
// seeing the price.
func DefaultDwell() map[string]Dwell {
	return map[string]Dwell{
		StatusNew:          {Min: 500 * time.Millisecond, Max: 2 * time.Second},
		StatusPriced:       {Min: 200 * time.Millisecond, Max: 1500 * time.Millisecond},
		StatusPaid:         {Min: 1 * time.Second, Max: 4 * time.Second},
		StatusInProduction: {Min: 3 * time.Second, Max: 10 * time.Second},
	}
}

// dwellFor returns how long order id stays in status. The draw is a hash of
// the order id and the status rather than a call to Config.Rand, so every
// generator sharing the database agrees on when an order is due without the
// draw being stored anywhere.
func dwellFor(d Dwell, id int64, status string) time.Duration {
	if d.Max <= d.Min {
		return d.Min
	}
	u := unitHash(uint64(id)*uint64(len(statusOrder)) + uint64(Index(status)))
	return d.Min + time.Duration(u*float64(d.Max-d.Min))
}

// unitHash maps x to [0, 1) with the splitmix64 finalizer.
func unitHash(x uint64) float64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// mergeDwell fills the statuses custom leaves out with DefaultDwell and
// checks every entry.
func mergeDwell(custom map[string]Dwell) (map[string]Dwell, error) {
	merged := DefaultDwell()
	for status, d := range custom {
		if _, ok := Next(status); !ok {
			return nil, fmt.Errorf("%w: dwell for %q: want one of new, priced, paid, in_production (shipped is final)", ErrInvalidConfig, status)
		}
		if d.Min < 0 || d.Max < 0 {
			return nil, fmt.Errorf("%w: dwell for %q is negative (%v..%v)", ErrInvalidConfig, status, d.Min, d.Max)
		}
		if d.Max != 0 && d.Max < d.Min {
			return nil, fmt.Errorf("%w: dwell for %q has Max %v below Min %v", ErrInvalidConfig, status, d.Max, d.Min)
		}
		merged[status] = d
	}
	return merged, nil
}
