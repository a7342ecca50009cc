package mesh_test

import (
	"fmt"
	"strings"

	"github.com/ficuslabs/ficus/pricing/mesh"
)

func ExampleParse() {
	// A tetrahedron as an OBJ: three 10 mm edges along the axes.
	obj := `v 0 0 0
v 10 0 0
v 0 10 0
v 0 0 10
f 1 3 2
f 1 2 4
f 1 4 3
f 2 3 4
`
	m, err := mesh.Parse(strings.NewReader(obj), "tetra.obj", mesh.Limits{})
	if err != nil {
		fmt.Println(err)
		return
	}
	a := mesh.Analyze(m)
	fmt.Printf("%d triangles, %.3f mm³, size %v mm, closed %v, manifold %v\n",
		a.Triangles, a.Volume, a.Size(), a.Closed, a.Manifold)

	_, err = mesh.Parse(strings.NewReader("v 0 0 0\nf 1 2 3\n"), "bad.obj", mesh.Limits{})
	fmt.Println(err)
	// Output:
	// 4 triangles, 166.667 mm³, size [10 10 10] mm, closed true, manifold true
	// malformed model: obj line 2: face corner "2": vertex index 2 out of range (1 defined so far)
}
