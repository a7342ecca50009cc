// Package mesh reads triangle meshes from model files (STL, OBJ, 3MF) and
// measures them: volume, surface area, bounding box, shells, closedness.
//
// Vertices are kept as the file gives them (float32, millimetres); every
// measure is computed in float64 from those exact values.
package mesh

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strings"
)

// Errors a parser returns, wrapped with what was wrong.
var (
	// ErrFormat: the file is not a model in a format ficus reads.
	ErrFormat = errors.New("unsupported model format")
	// ErrMalformed: the file claims to be a model but is broken.
	ErrMalformed = errors.New("malformed model")
	// ErrTooLarge: the file or its mesh exceeds a limit.
	ErrTooLarge = errors.New("model too large")
)

// Mesh is a triangle mesh as read from a model file.
type Mesh struct {
	// Vertices are positions in millimetres, exactly as the file gives
	// them. A file may repeat one position under several indices.
	Vertices [][3]float32
	// Triangles index Vertices, counter-clockwise seen from outside.
	Triangles [][3]uint32
}

// Limits bound what a parser accepts. Zero fields take their defaults.
type Limits struct {
	// MaxBytes is the largest file read. Defaults to 256 MiB.
	MaxBytes int64
	// MaxTriangles is the most triangles a mesh may have. Defaults to
	// 5,000,000.
	MaxTriangles int
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = 256 << 20
	}
	if l.MaxTriangles <= 0 {
		l.MaxTriangles = 5_000_000
	}
	return l
}

// Parse reads a model; name's extension (.stl, .obj, .3mf) picks the
// format.
//
// Placeholder: reads binary STL only.
func Parse(r io.Reader, name string, lim Limits) (*Mesh, error) {
	lim = lim.withDefaults()
	if ext := strings.ToLower(path.Ext(name)); ext != ".stl" {
		return nil, fmt.Errorf("%w: %q", ErrFormat, ext)
	}
	var head [84]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, fmt.Errorf("%w: stl header: %v", ErrMalformed, err)
	}
	n := binary.LittleEndian.Uint32(head[80:])
	if int64(n) > int64(lim.MaxTriangles) {
		return nil, fmt.Errorf("%w: %d triangles", ErrTooLarge, n)
	}
	m := &Mesh{}
	var rec [50]byte
	for i := uint32(0); i < n; i++ {
		if _, err := io.ReadFull(r, rec[:]); err != nil {
			return nil, fmt.Errorf("%w: triangle %d: %v", ErrMalformed, i, err)
		}
		var t [3]uint32
		for k := range 3 {
			var v [3]float32
			for j := range 3 {
				v[j] = math.Float32frombits(binary.LittleEndian.Uint32(rec[12+12*k+4*j:]))
			}
			t[k] = uint32(len(m.Vertices))
			m.Vertices = append(m.Vertices, v)
		}
		m.Triangles = append(m.Triangles, t)
	}
	return m, nil
}

// Analysis is what Analyze measures.
type Analysis struct {
	// Triangles is the number of triangles.
	Triangles int
	// Volume is the enclosed volume in mm³ (signed sum of tetrahedra;
	// meaningful only for a closed mesh).
	Volume float64
	// Area is the surface area in mm².
	Area float64
	// Min and Max are the corners of the axis-aligned bounding box, mm.
	Min, Max [3]float64
	// Shells is the number of connected parts (triangles joined through
	// shared vertex positions).
	Shells int
	// Closed: every edge is shared by exactly two triangles.
	Closed bool
	// Manifold: closed, and the two triangles on every edge run it in
	// opposite directions.
	Manifold bool
}

// Size is the bounding box's extent along x, y and z, mm.
func (a Analysis) Size() [3]float64 {
	return [3]float64{a.Max[0] - a.Min[0], a.Max[1] - a.Min[1], a.Max[2] - a.Min[2]}
}

// Analyze measures m.
//
// Placeholder: volume, area and bounding box only.
func Analyze(m *Mesh) Analysis {
	a := Analysis{Triangles: len(m.Triangles)}
	for i := range 3 {
		a.Min[i], a.Max[i] = math.Inf(1), math.Inf(-1)
	}
	for _, t := range m.Triangles {
		var p [3][3]float64
		for k := range 3 {
			for j := range 3 {
				p[k][j] = float64(m.Vertices[t[k]][j])
				a.Min[j] = min(a.Min[j], p[k][j])
				a.Max[j] = max(a.Max[j], p[k][j])
			}
		}
		u := sub(p[1], p[0])
		v := sub(p[2], p[0])
		c := cross(u, v)
		a.Area += math.Sqrt(c[0]*c[0]+c[1]*c[1]+c[2]*c[2]) / 2
		a.Volume += dot(p[0], cross(p[1], p[2])) / 6
	}
	return a
}

func sub(a, b [3]float64) [3]float64 { return [3]float64{a[0] - b[0], a[1] - b[1], a[2] - b[2]} }
func dot(a, b [3]float64) float64    { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }
func cross(a, b [3]float64) [3]float64 {
	return [3]float64{a[1]*b[2] - a[2]*b[1], a[2]*b[0] - a[0]*b[2], a[0]*b[1] - a[1]*b[0]}
}
