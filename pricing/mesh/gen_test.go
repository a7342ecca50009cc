package mesh

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"testing"
)

// The test solids, and writers that put a mesh into each format, so the
// parsers and the analysis can be checked against exact values.

// box is an axis-aligned box from lo to hi, 12 triangles facing out, with
// its 8 corners shared by index.
func box(lo, hi [3]float32) *Mesh {
	m := &Mesh{}
	for i := range 8 {
		var v [3]float32
		for j := range 3 {
			v[j] = lo[j]
			if i>>j&1 == 1 {
				v[j] = hi[j]
			}
		}
		m.Vertices = append(m.Vertices, v)
	}
	// Corner index bits: x=1, y=2, z=4.
	quads := [][4]uint32{
		{0, 2, 3, 1}, // z = lo, facing -z
		{4, 5, 7, 6}, // z = hi
		{0, 1, 5, 4}, // y = lo
		{2, 6, 7, 3}, // y = hi
		{0, 4, 6, 2}, // x = lo
		{1, 3, 7, 5}, // x = hi
	}
	for _, q := range quads {
		m.Triangles = append(m.Triangles, [3]uint32{q[0], q[1], q[2]}, [3]uint32{q[0], q[2], q[3]})
	}
	return m
}

// tetra is the tetrahedron o, o+a·x, o+b·y, o+c·z.
func tetra(o [3]float32, a, b, c float32) *Mesh {
	return &Mesh{
		Vertices: [][3]float32{o, {o[0] + a, o[1], o[2]}, {o[0], o[1] + b, o[2]}, {o[0], o[1], o[2] + c}},
		Triangles: [][3]uint32{
			{0, 2, 1}, {0, 1, 3}, {0, 3, 2}, {1, 2, 3},
		},
	}
}

// cylinder is a closed n-sided prism around the z axis through centre,
// radius r, height h: caps as fans from their centres.
func cylinder(centre [3]float32, r, h float32, n int) *Mesh {
	m := &Mesh{}
	m.Vertices = append(m.Vertices, centre, [3]float32{centre[0], centre[1], centre[2] + h})
	for i := range n {
		s, c := math.Sincos(2 * math.Pi * float64(i) / float64(n))
		x, y := centre[0]+float32(float64(r)*c), centre[1]+float32(float64(r)*s)
		m.Vertices = append(m.Vertices, [3]float32{x, y, centre[2]}, [3]float32{x, y, centre[2] + h})
	}
	for i := range n {
		j := (i + 1) % n
		b0, t0, b1, t1 := uint32(2+2*i), uint32(3+2*i), uint32(2+2*j), uint32(3+2*j)
		m.Triangles = append(m.Triangles,
			[3]uint32{0, b1, b0}, [3]uint32{1, t0, t1},
			[3]uint32{b0, b1, t1}, [3]uint32{b0, t1, t0})
	}
	return m
}

// join puts meshes side by side in one.
func join(ms ...*Mesh) *Mesh {
	out := &Mesh{}
	for _, m := range ms {
		base := uint32(len(out.Vertices))
		out.Vertices = append(out.Vertices, m.Vertices...)
		for _, t := range m.Triangles {
			out.Triangles = append(out.Triangles, [3]uint32{base + t[0], base + t[1], base + t[2]})
		}
	}
	return out
}

// unshare gives every triangle corner its own vertex, as STL does.
func unshare(m *Mesh) *Mesh {
	out := &Mesh{}
	for _, t := range m.Triangles {
		base := uint32(len(out.Vertices))
		out.Vertices = append(out.Vertices, m.Vertices[t[0]], m.Vertices[t[1]], m.Vertices[t[2]])
		out.Triangles = append(out.Triangles, [3]uint32{base, base + 1, base + 2})
	}
	return out
}

// exactVolume is the mesh's signed volume computed exactly from its
// float32 vertices.
func exactVolume(m *Mesh) *big.Rat {
	sum := new(big.Rat)
	r := func(f float32) *big.Rat { return new(big.Rat).SetFloat64(float64(f)) }
	for _, t := range m.Triangles {
		a, b, c := m.Vertices[t[0]], m.Vertices[t[1]], m.Vertices[t[2]]
		// a · (b × c)
		var cr [3]*big.Rat
		for i := range 3 {
			j, k := (i+1)%3, (i+2)%3
			p := new(big.Rat).Mul(r(b[j]), r(c[k]))
			q := new(big.Rat).Mul(r(b[k]), r(c[j]))
			cr[i] = p.Sub(p, q)
		}
		for i := range 3 {
			sum.Add(sum, new(big.Rat).Mul(r(a[i]), cr[i]))
		}
	}
	return sum.Quo(sum, big.NewRat(6, 1))
}

// exactArea is the mesh's area from its float32 vertices, each
// triangle's square root taken to 256 bits.
func exactArea(m *Mesh) *big.Float {
	const prec = 256
	sum := new(big.Float).SetPrec(prec)
	r := func(f float32) *big.Rat { return new(big.Rat).SetFloat64(float64(f)) }
	for _, t := range m.Triangles {
		a, b, c := m.Vertices[t[0]], m.Vertices[t[1]], m.Vertices[t[2]]
		var u, v [3]*big.Rat
		for i := range 3 {
			u[i] = new(big.Rat).Sub(r(b[i]), r(a[i]))
			v[i] = new(big.Rat).Sub(r(c[i]), r(a[i]))
		}
		n2 := new(big.Rat)
		for i := range 3 {
			j, k := (i+1)%3, (i+2)%3
			p := new(big.Rat).Mul(u[j], v[k])
			p.Sub(p, new(big.Rat).Mul(u[k], v[j]))
			n2.Add(n2, p.Mul(p, p))
		}
		f := new(big.Float).SetPrec(prec).SetRat(n2)
		sum.Add(sum, f.Sqrt(f))
	}
	return sum.Quo(sum, big.NewFloat(2))
}

func relErr(got float64, want *big.Float) float64 {
	w, _ := want.Float64()
	if w == 0 {
		return math.Abs(got)
	}
	return math.Abs(got-w) / math.Abs(w)
}

// checkExact fails unless a's volume and area agree with the exact values
// for m to 1e-9 relative.
func checkExact(t *testing.T, name string, m *Mesh, a Analysis) {
	t.Helper()
	v := new(big.Float).SetPrec(256).SetRat(exactVolume(m))
	if e := relErr(a.Volume, v); e > 1e-9 {
		t.Errorf("%s: volume %v, exact %s: relative error %.3g", name, a.Volume, v.Text('g', 17), e)
	}
	ar := exactArea(m)
	if e := relErr(a.Area, ar); e > 1e-9 {
		t.Errorf("%s: area %v, exact %s: relative error %.3g", name, a.Area, ar.Text('g', 17), e)
	}
}

func f32(v float32) string { return strconv.FormatFloat(float64(v), 'g', -1, 32) }

func binarySTL(m *Mesh, header string) []byte {
	var b bytes.Buffer
	h := make([]byte, 80)
	copy(h, header)
	b.Write(h)
	binary.Write(&b, binary.LittleEndian, uint32(len(m.Triangles)))
	for _, t := range m.Triangles {
		binary.Write(&b, binary.LittleEndian, [3]float32{})
		for k := range 3 {
			binary.Write(&b, binary.LittleEndian, m.Vertices[t[k]])
		}
		b.Write([]byte{0, 0})
	}
	return b.Bytes()
}

func asciiSTL(m *Mesh) []byte {
	var b bytes.Buffer
	b.WriteString("solid test\n")
	for _, t := range m.Triangles {
		b.WriteString("  facet normal 0 0 0\n    outer loop\n")
		for k := range 3 {
			v := m.Vertices[t[k]]
			fmt.Fprintf(&b, "      vertex %s %s %s\n", f32(v[0]), f32(v[1]), f32(v[2]))
		}
		b.WriteString("    endloop\n  endfacet\n")
	}
	b.WriteString("endsolid test\n")
	return b.Bytes()
}

func objFile(m *Mesh) []byte {
	var b bytes.Buffer
	b.WriteString("# test\n")
	for _, v := range m.Vertices {
		fmt.Fprintf(&b, "v %s %s %s\n", f32(v[0]), f32(v[1]), f32(v[2]))
	}
	for _, t := range m.Triangles {
		fmt.Fprintf(&b, "f %d %d %d\n", t[0]+1, t[1]+1, t[2]+1)
	}
	return b.Bytes()
}

// zipFiles writes a zip of the given entries, in order.
func zipFiles(t testing.TB, entries ...[2]string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, e := range entries {
		w, err := zw.Create(e[0])
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(e[1]))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const rootRels = `<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Target="/3D/3dmodel.model" Id="rel0" Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/></Relationships>`

// modelXML is a 3MF model part with m as object 1 and one build item.
func modelXML(m *Mesh, unit, itemTransform string) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?><model unit="%s" xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02"><resources><object id="1" type="model"><mesh><vertices>`, unit)
	for _, v := range m.Vertices {
		fmt.Fprintf(&b, `<vertex x="%s" y="%s" z="%s"/>`, f32(v[0]), f32(v[1]), f32(v[2]))
	}
	b.WriteString(`</vertices><triangles>`)
	for _, t := range m.Triangles {
		fmt.Fprintf(&b, `<triangle v1="%d" v2="%d" v3="%d"/>`, t[0], t[1], t[2])
	}
	b.WriteString(`</triangles></mesh></object></resources><build><item objectid="1"`)
	if itemTransform != "" {
		fmt.Fprintf(&b, ` transform="%s"`, itemTransform)
	}
	b.WriteString(`/></build></model>`)
	return b.String()
}

func threeMF(t testing.TB, m *Mesh) []byte {
	return zipFiles(t, [2]string{"_rels/.rels", rootRels}, [2]string{"3D/3dmodel.model", modelXML(m, "millimeter", "")})
}
