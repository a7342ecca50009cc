package solids

import "fmt"

// Part is a named solid as binary STL.
type Part struct {
	// Name is a file name, e.g. "tube-d30-w2-h60.stl".
	Name string
	STL  []byte
}

// Catalogue returns a fixed set of parts of varied size, height and wall
// thickness, all of which fit a 250 × 210 × 220 mm printer: what the
// simulated shop sells and the demo quotes.
func Catalogue() []Part {
	type spec struct {
		name string
		stl  func() ([]byte, error)
	}
	specs := []spec{
		{"box-20x20x20", func() ([]byte, error) { return Box(20, 20, 20) }},
		{"box-60x40x10", func() ([]byte, error) { return Box(60, 40, 10) }},
		{"box-120x80x30", func() ([]byte, error) { return Box(120, 80, 30) }},
		{"cylinder-d20-h40", func() ([]byte, error) { return Cylinder(20, 40, 64) }},
		{"cylinder-d50-h10", func() ([]byte, error) { return Cylinder(50, 10, 96) }},
		{"tube-d16-w1.5-h100", func() ([]byte, error) { return Tube(16, 1.5, 100, 48) }},
		{"tube-d30-w2-h60", func() ([]byte, error) { return Tube(30, 2, 60, 64) }},
		{"tube-d80-w3-h40", func() ([]byte, error) { return Tube(80, 3, 40, 128) }},
		{"bracket-40x40x20-t3", func() ([]byte, error) { return LBracket(40, 40, 20, 3) }},
		{"bracket-80x50x30-t5", func() ([]byte, error) { return LBracket(80, 50, 30, 5) }},
		{"bracket-150x100x40-t6", func() ([]byte, error) { return LBracket(150, 100, 40, 6) }},
	}
	parts := make([]Part, len(specs))
	for i, s := range specs {
		stl, err := s.stl()
		if err != nil {
			panic(fmt.Sprintf("solids: catalogue part %s: %v", s.name, err)) // fixed sizes: a defect, caught by the tests
		}
		parts[i] = Part{Name: s.name + ".stl", STL: stl}
	}
	return parts
}
