package solids_test

import (
	"fmt"

	"github.com/ficuslabs/ficus/pricing/solids"
)

func ExampleTube() {
	stl, err := solids.Tube(40, 2, 50, 48)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(stl), "bytes of binary STL")
	// Output: 19284 bytes of binary STL
}
