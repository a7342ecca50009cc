package cutover_test

import (
	"fmt"

	"github.com/ficuslabs/ficus/proxy/cutover"
)

// A client keeps its side as the share grows, and only ever moves from the
// legacy target to the new one: each tenant's bucket on the route is fixed.
func ExampleSide() {
	tenants := []string{"umbrella", "hooli", "initech", "acme"}
	for _, t := range tenants {
		fmt.Printf("%s in bucket %d\n", t, cutover.Bucket("quotes", t))
	}
	for _, percent := range []string{"0", "10", "50", "100"} {
		bps, _ := cutover.ParsePercent(percent)
		fmt.Printf("%3s%%:", percent)
		for _, t := range tenants {
			fmt.Printf(" %s", cutover.Side("quotes", t, bps))
		}
		fmt.Println()
	}
	// Output:
	// umbrella in bucket 297
	// hooli in bucket 1627
	// initech in bucket 3741
	// acme in bucket 8271
	//   0%: legacy legacy legacy legacy
	//  10%: new legacy legacy legacy
	//  50%: new new new legacy
	// 100%: new new new new
}
