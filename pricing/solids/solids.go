// Package solids generates simple printable solids as binary STL files:
// a box, a cylinder, a tube with a wall thickness and an L-bracket. The
// demo, the simulated shop and the tests write them into the model store
// as real model files.
//
// Every solid is closed and manifold: each edge is shared by exactly two
// triangles that run it in opposite directions, vertices repeat exactly
// (the same float32 position wherever a corner is used), and triangles
// are counter-clockwise seen from outside. Sizes are millimetres; the
// solids stand on z = 0 with their lower corner (box, bracket) or axis
// (cylinder, tube) at the origin of x and y.
package solids

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrSize marks a size a solid cannot have.
var ErrSize = errors.New("solids: invalid size")

// MaxSegments bounds the segments of a round solid.
const MaxSegments = 4096

type vec [3]float64

// solid is a triangle soup, counter-clockwise seen from outside.
type solid [][3]vec

func checkSizes(sizes ...float64) error {
	for _, s := range sizes {
		if !(s > 0 && s <= 1e6) {
			return fmt.Errorf("%w: %v mm: want more than 0 and at most 1e6", ErrSize, s)
		}
	}
	return nil
}

func checkSegments(n int) error {
	if n < 3 || n > MaxSegments {
		return fmt.Errorf("%w: %d segments: want 3 to %d", ErrSize, n, MaxSegments)
	}
	return nil
}

// Box returns an x × y × z box.
func Box(x, y, z float64) ([]byte, error) {
	if err := checkSizes(x, y, z); err != nil {
		return nil, err
	}
	poly := [][2]float64{{0, 0}, {x, 0}, {x, y}, {0, y}}
	return encode(fmt.Sprintf("box %gx%gx%g", x, y, z), prism(poly, nil, z)), nil
}

// Cylinder returns a cylinder of diameter d and height h, its round side
// a regular polygon of n segments.
func Cylinder(d, h float64, n int) ([]byte, error) {
	if err := checkSizes(d, h); err != nil {
		return nil, err
	}
	if err := checkSegments(n); err != nil {
		return nil, err
	}
	return encode(fmt.Sprintf("cylinder d%g h%g", d, h), prism(ring(d/2, n), nil, h)), nil
}

// Tube returns a tube of outer diameter d, wall thickness wall and
// height h, its round sides regular polygons of n segments.
func Tube(d, wall, h float64, n int) ([]byte, error) {
	if err := checkSizes(d, wall, h); err != nil {
		return nil, err
	}
	if err := checkSegments(n); err != nil {
		return nil, err
	}
	if 2*wall >= d {
		return nil, fmt.Errorf("%w: wall %v mm leaves no hole in a tube of diameter %v mm", ErrSize, wall, d)
	}
	return encode(fmt.Sprintf("tube d%g wall%g h%g", d, wall, h), prism(ring(d/2, n), ring(d/2-wall, n), h)), nil
}

// LBracket returns an L-shaped bracket: a base plate length long and a
// wall height high, both thick thick, extruded width along y. Its
// profile lies in the xz plane.
func LBracket(length, height, width, thick float64) ([]byte, error) {
	if err := checkSizes(length, height, width, thick); err != nil {
		return nil, err
	}
	if thick >= length || thick >= height {
		return nil, fmt.Errorf("%w: thickness %v mm must be less than the length %v and height %v", ErrSize, thick, length, height)
	}
	// The L in the xy plane, star-shaped from its corner (0,0) so a fan
	// triangulates it, extruded along z, then turned so that its profile
	// lies in xz: swapping y and z mirrors, so every triangle flips.
	poly := [][2]float64{{0, 0}, {length, 0}, {length, thick}, {thick, thick}, {thick, height}, {0, height}}
	s := prism(poly, nil, width)
	for i, t := range s {
		for k := range t {
			t[k] = vec{t[k][0], t[k][2], t[k][1]}
		}
		s[i] = [3]vec{t[0], t[2], t[1]}
	}
	return encode(fmt.Sprintf("L-bracket %gx%gx%g t%g", length, height, width, thick), s), nil
}

// ring returns a regular n-gon of radius r, counter-clockwise.
func ring(r float64, n int) [][2]float64 {
	p := make([][2]float64, n)
	for i := range p {
		a := 2 * math.Pi * float64(i) / float64(n)
		p[i] = [2]float64{r * math.Cos(a), r * math.Sin(a)}
	}
	return p
}

// prism extrudes a counter-clockwise polygon, star-shaped from its first
// corner, from z = 0 to z = h. With a hole (a ring of as many corners,
// counter-clockwise too, lying inside outer corner by corner) it extrudes
// the annulus between them instead.
func prism(outer, hole [][2]float64, h float64) solid {
	var s solid
	at := func(p [2]float64, z float64) vec { return vec{p[0], p[1], z} }
	side := func(a, b [2]float64) { // the wall along edge a→b, facing right of it
		s = append(s, [3]vec{at(a, 0), at(b, 0), at(b, h)}, [3]vec{at(a, 0), at(b, h), at(a, h)})
	}
	n := len(outer)
	for i := range n {
		side(outer[i], outer[(i+1)%n])
	}
	if hole == nil {
		for i := 1; i+1 < n; i++ {
			a, b, c := outer[0], outer[i], outer[i+1]
			s = append(s, [3]vec{at(a, h), at(b, h), at(c, h)}, [3]vec{at(a, 0), at(c, 0), at(b, 0)})
		}
		return s
	}
	for i := range n {
		j := (i + 1) % n
		side(hole[j], hole[i]) // clockwise: the wall faces the axis
		o0, o1, i0, i1 := outer[i], outer[j], hole[i], hole[j]
		s = append(s,
			[3]vec{at(o0, h), at(o1, h), at(i1, h)}, [3]vec{at(o0, h), at(i1, h), at(i0, h)},
			[3]vec{at(o0, 0), at(i1, 0), at(o1, 0)}, [3]vec{at(o0, 0), at(i0, 0), at(i1, 0)})
	}
	return s
}

// encode writes a binary STL: an 80-byte header naming the solid, the
// triangle count, then per triangle its unit normal, three corners and a
// zero attribute word, all little-endian float32.
func encode(name string, s solid) []byte {
	out := make([]byte, 84, 84+50*len(s))
	copy(out, "ficus solids: "+name)
	binary.LittleEndian.PutUint32(out[80:], uint32(len(s)))
	put := func(v float64) { out = binary.LittleEndian.AppendUint32(out, math.Float32bits(float32(v))) }
	for _, t := range s {
		u := vec{t[1][0] - t[0][0], t[1][1] - t[0][1], t[1][2] - t[0][2]}
		v := vec{t[2][0] - t[0][0], t[2][1] - t[0][1], t[2][2] - t[0][2]}
		nrm := vec{u[1]*v[2] - u[2]*v[1], u[2]*v[0] - u[0]*v[2], u[0]*v[1] - u[1]*v[0]}
		l := math.Sqrt(nrm[0]*nrm[0] + nrm[1]*nrm[1] + nrm[2]*nrm[2])
		for _, c := range nrm {
			put(c / l)
		}
		for _, p := range t {
			for _, c := range p {
				put(c)
			}
		}
		out = append(out, 0, 0)
	}
	return out
}
