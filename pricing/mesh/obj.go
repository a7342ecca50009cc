package mesh

import (
	"bufio"
	"fmt"
	"io"
)

// parseOBJ reads the geometry of a Wavefront OBJ: "v x y z [w]" (extra
// numbers, such as vertex colours "v x y z r g b", are ignored) and "f"
// faces. A face's corners are "v", "v/vt", "v//vn", "v/vt/vn" or "v/";
// negative indices count back from the last vertex defined so far; a face
// with more than three corners is split into a fan of triangles from its
// first corner. Other statements (vt, vn, g, o, s, usemtl, mtllib, l, ...)
// and comments are skipped. Units are taken to be millimetres.
func parseOBJ(r io.Reader, lim Limits) (*Mesh, error) {
	m := &Mesh{}
	lr := lineReader{br: bufio.NewReaderSize(r, 1<<16)}
	var face []uint32
	for {
		f, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("obj: %w", err)
		}
		if len(f) == 0 || f[0][0] == '#' {
			continue
		}
		switch string(f[0]) {
		case "v":
			if len(f) < 4 {
				return nil, fmt.Errorf("%w: obj line %d: a vertex needs three coordinates, found %d", ErrMalformed, lr.line, len(f)-1)
			}
			var v [3]float32
			for j := range 3 {
				x, err := parseFloat32(f[1+j])
				if err != nil {
					return nil, fmt.Errorf("%w: obj line %d: vertex coordinate %q: %v", ErrMalformed, lr.line, clip(f[1+j]), err)
				}
				v[j] = x
			}
			if len(m.Vertices) >= 3*lim.MaxTriangles+3 {
				return nil, fmt.Errorf("%w: obj line %d: more than %d vertices (3 × the triangle limit)", ErrTooLarge, lr.line, 3*lim.MaxTriangles+3)
			}
			m.Vertices = append(m.Vertices, v)
		case "f", "fo":
			if len(f) < 4 {
				return nil, fmt.Errorf("%w: obj line %d: a face needs at least three corners, found %d", ErrMalformed, lr.line, len(f)-1)
			}
			face = face[:0]
			for _, c := range f[1:] {
				i, err := objIndex(c, len(m.Vertices))
				if err != nil {
					return nil, fmt.Errorf("%w: obj line %d: face corner %q: %v", ErrMalformed, lr.line, clip(c), err)
				}
				face = append(face, i)
			}
			if len(m.Triangles)+len(face)-2 > lim.MaxTriangles {
				return nil, fmt.Errorf("%w: obj line %d: more than the limit of %d triangles", ErrTooLarge, lr.line, lim.MaxTriangles)
			}
			for k := 1; k+1 < len(face); k++ {
				m.Triangles = append(m.Triangles, [3]uint32{face[0], face[k], face[k+1]})
			}
		}
	}
	return m, nil
}

// objIndex resolves a face corner ("7", "7/1", "7//3", "7/", "-2/...") to
// a 0-based index into the n vertices defined so far.
func objIndex(c []byte, n int) (uint32, error) {
	neg := false
	i := 0
	if i < len(c) && (c[i] == '-' || c[i] == '+') {
		neg = c[i] == '-'
		i++
	}
	start := i
	var v int64
	for ; i < len(c) && c[i] >= '0' && c[i] <= '9'; i++ {
		if v > int64(n) {
			// Already past every vertex: keep scanning digits, not the value.
			continue
		}
		v = v*10 + int64(c[i]-'0')
	}
	if i == start || (i < len(c) && c[i] != '/') {
		return 0, fmt.Errorf("not a vertex index")
	}
	switch {
	case v == 0:
		return 0, fmt.Errorf("vertex index 0 (indices start at 1)")
	case v > int64(n) && neg:
		return 0, fmt.Errorf("relative index -%d reaches before the first vertex (%d defined so far)", v, n)
	case v > int64(n):
		return 0, fmt.Errorf("vertex index %s out of range (%d defined so far)", clip(c[start:i]), n)
	case neg:
		return uint32(int64(n) - v), nil
	default:
		return uint32(v - 1), nil
	}
}
