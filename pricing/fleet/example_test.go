package fleet_test

import (
	"fmt"

	"github.com/ficuslabs/ficus/pricing/fleet"
)

// A client that sends Prefer: respond-async gets 202 at once; wait=N
// shortens how long the API waits for the price.
func ExampleParsePrefer() {
	p := fleet.ParsePrefer([]string{"respond-async, wait=10"})
	fmt.Println(p.RespondAsync, p.Wait)
	// Output: true 10s
}

// Each lane has its own River queue, so a burst in one never delays the
// other.
func ExampleLane_Queue() {
	for _, l := range fleet.Lanes {
		fmt.Println(l, l.Queue())
	}
	// Output:
	// b2b pricing_b2b
	// b2c pricing_b2c
}
