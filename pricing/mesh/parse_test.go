package mesh

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"testing/iotest"
)

// sizeless hides a reader's size, as a network stream would.
type sizeless struct{ r io.Reader }

func (s sizeless) Read(p []byte) (int, error) { return s.r.Read(p) }

func sameMeshGeometry(t *testing.T, name string, got, want *Mesh) {
	t.Helper()
	if len(got.Triangles) != len(want.Triangles) {
		t.Fatalf("%s: %d triangles, want %d", name, len(got.Triangles), len(want.Triangles))
	}
	for i := range want.Triangles {
		for k := range 3 {
			g, w := got.Vertices[got.Triangles[i][k]], want.Vertices[want.Triangles[i][k]]
			if g != w {
				t.Fatalf("%s: triangle %d corner %d at %v, want %v", name, i, k, g, w)
			}
		}
	}
}

func TestParseRoundTrip(t *testing.T) {
	t.Parallel()
	m := join(cylinder([3]float32{1.1, -2.2, 3.3}, 7.77, 12.5, 50), box([3]float32{-40, -40, 0}, [3]float32{-30.5, -31, 9.25}))
	files := map[string][]byte{
		"m.stl":            binarySTL(m, "ficus test"),
		"solid-header.stl": binarySTL(m, "solid ficus, binary"),
		"NUL.STL":          binarySTL(m, ""),
		"ascii.stl":        asciiSTL(m),
		"m.obj":            objFile(m),
		"m.3mf":            threeMF(t, m),
	}
	want := Analyze(m)
	for name, data := range files {
		for _, r := range []io.Reader{bytes.NewReader(data), sizeless{bytes.NewReader(data)}, iotest.OneByteReader(bytes.NewReader(data))} {
			got, err := Parse(r, name, Limits{})
			if err != nil {
				t.Fatalf("%s (%T): %v", name, r, err)
			}
			sameMeshGeometry(t, name, got, m)
			if a := Analyze(got); a != want {
				t.Errorf("%s: %+v, want %+v", name, a, want)
			}
		}
	}
}

func TestParseOBJFeatures(t *testing.T) {
	t.Parallel()
	// A unit cube as quads in every index style, with colours, w,
	// comments, tabs, CRLF, relative indices and statements to skip.
	src := "# cube\r\nmtllib x.mtl\r\no cube\r\n" +
		"v 0 0 0 1.0\nv 1 0 0 188 188 188\nv\t0 1 0\nv 1 1 0\n" +
		"v 0 0 1\nv 1 0 1\nv 0 1 1\nv 1 1 1\nvt 0 0\nvn 0 0 1\ng side\ns off\nusemtl m\n" +
		"f 1/1 3/1 4/1 2/1\n" +
		"f 5//1 6//1 8//1 7//1\n" +
		"f 1/ 2/ 6/ 5/\n" +
		"f 3/1/1 7/1/1 8/1/1 4/1/1\n" +
		"f -8 -4 -2 -6\n" + // 1 5 7 3
		"f\t2 \t4 \t8 \t6\n"
	m, err := Parse(strings.NewReader(src), "cube.OBJ", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	a := Analyze(m)
	if a.Triangles != 12 || !a.Manifold || a.Volume != 1 || a.Area != 6 {
		t.Errorf("%+v", a)
	}
}

func TestParse3MFTransformsAndUnits(t *testing.T) {
	t.Parallel()
	cube := box([3]float32{0, 0, 0}, [3]float32{1, 2, 3})
	// Scale by 2 on x, then move; unit centimetre: 10 mm.
	data := zipFiles(t, [2]string{"_rels/.rels", rootRels},
		[2]string{"3D/3dmodel.model", modelXML(cube, "centimeter", "2 0 0 0 1 0 0 0 1 5 6 7")})
	m, err := Parse(bytes.NewReader(data), "x.3mf", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	a := Analyze(m)
	if math.Abs(a.Volume-2*6*1000) > 1e-9 || a.Min != [3]float64{50, 60, 70} || a.Max != [3]float64{70, 80, 100} {
		t.Errorf("%+v", a)
	}

	// Components: object 2 places object 1 twice, the build places 2
	// twice (rotated 90° about z the second time): four cubes.
	comp := strings.Replace(modelXML(cube, "millimeter", "0 1 0 -1 0 0 0 0 1 100 0 0"), `</resources>`,
		`<object id="2" type="model"><components><component objectid="1"/><component objectid="1" transform="1 0 0 0 1 0 0 0 1 10 0 0"/></components></object></resources>`, 1)
	comp = strings.Replace(comp, `<build><item objectid="1" transform`, `<build><item objectid="2"/><item objectid="2" transform`, 1)
	data = zipFiles(t, [2]string{"_rels/.rels", rootRels}, [2]string{"3D/3dmodel.model", comp})
	m, err = Parse(bytes.NewReader(data), "x.3mf", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	a = Analyze(m)
	if a.Triangles != 48 || a.Shells != 4 || !a.Manifold || math.Abs(a.Volume-24) > 1e-12 {
		t.Errorf("components: %+v", a)
	}
	if _, err := Parse(bytes.NewReader(data), "x.3mf", Limits{MaxTriangles: 47}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("components over the triangle limit: %v", err)
	}

	// One triangle with many vertices, placed many times: the vertices
	// count against the limit too, before anything is expanded.
	many := &Mesh{Triangles: [][3]uint32{{0, 1, 2}}}
	for i := range 3000 {
		many.Vertices = append(many.Vertices, [3]float32{float32(i), float32(i % 7), 1})
	}
	var comps strings.Builder
	for range 200 {
		comps.WriteString(`<component objectid="1"/>`)
	}
	bomb := strings.Replace(modelXML(many, "millimeter", ""), `</resources>`,
		`<object id="2"><components>`+comps.String()+`</components></object></resources>`, 1)
	bomb = strings.Replace(bomb, `item objectid="1"`, `item objectid="2"`, 1)
	data = zipFiles(t, [2]string{"_rels/.rels", rootRels}, [2]string{"3D/3dmodel.model", bomb})
	if _, err := Parse(bytes.NewReader(data), "x.3mf", Limits{MaxTriangles: 1000}); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "vertices") {
		t.Errorf("components over the vertex limit: %v", err)
	}
}

func TestSTLSniff(t *testing.T) {
	t.Parallel()
	cube := box([3]float32{0, 0, 0}, [3]float32{1, 1, 1})
	bin := binarySTL(cube, "solid cube exported by a CAD program that writes binary")
	// A binary file starting with "solid" whose triangles happen to start
	// with text still counts as binary when its size says so.
	for _, r := range []io.Reader{bytes.NewReader(bin), sizeless{bytes.NewReader(bin)}} {
		m, err := Parse(r, "c.stl", Limits{})
		if err != nil || len(m.Triangles) != 12 {
			t.Fatalf("binary with a solid header (%T): %v", r, err)
		}
	}
	// An all-NUL header and zero normals.
	nul := binarySTL(cube, "")
	if m, err := Parse(bytes.NewReader(nul), "c.stl", Limits{}); err != nil || len(m.Triangles) != 12 {
		t.Fatalf("all-NUL header: %v", err)
	}
	// ASCII whose length happens to be 84+50n for the number its bytes
	// 80..83 spell would be misread; any other length is ASCII.
	asc := asciiSTL(cube)
	if m, err := Parse(bytes.NewReader(asc), "c.stl", Limits{}); err != nil || len(m.Triangles) != 12 {
		t.Fatalf("ascii: %v", err)
	}
	// Empty solid.
	if m, err := Parse(strings.NewReader("solid x\nendsolid x\n"), "c.stl", Limits{}); err != nil || len(m.Triangles) != 0 {
		t.Fatalf("empty ascii solid: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	cube := box([3]float32{0, 0, 0}, [3]float32{1, 1, 1})
	bin := binarySTL(cube, "x")
	huge := bytes.Clone(bin[:84])
	binary.LittleEndian.PutUint32(huge[80:], 4_000_000_000)
	lying := bytes.Clone(bin)
	binary.LittleEndian.PutUint32(lying[80:], 4_000_000)
	nan := bytes.Clone(bin)
	binary.LittleEndian.PutUint32(nan[84+12+50*3:], math.Float32bits(float32(math.NaN())))
	inf := bytes.Clone(bin)
	binary.LittleEndian.PutUint32(inf[84+24:], math.Float32bits(float32(math.Inf(-1))))
	bigModel := modelXML(cube, "millimeter", "")

	cases := []struct {
		name, file string
		data       []byte
		lim        Limits
		want       error
		msg        string
	}{
		{"unknown extension", "m.step", []byte("x"), Limits{}, ErrFormat, `".step"`},
		{"empty stl", "m.stl", nil, Limits{}, ErrMalformed, "header"},
		{"short stl", "m.stl", bin[:40], Limits{}, ErrMalformed, "header"},
		{"4e9 triangles", "m.stl", huge, Limits{}, ErrTooLarge, "4000000000 triangles"},
		{"count past the end", "m.stl", lying, Limits{}, ErrMalformed, "claims 4000000 triangles"},
		{"truncated", "m.stl", bin[:len(bin)-7], Limits{}, ErrMalformed, "claims 12 triangles"},
		{"NaN", "m.stl", nan, Limits{}, ErrMalformed, "triangle 3: vertex 1"},
		{"Inf", "m.stl", inf, Limits{}, ErrMalformed, "triangle 0: vertex 2"},
		{"too many triangles", "m.stl", bin, Limits{MaxTriangles: 11}, ErrTooLarge, "limit of 11"},
		{"too many bytes", "m.stl", bin, Limits{MaxBytes: 600}, ErrTooLarge, "limit of 600"},
		{"ascii nan", "m.stl", []byte("solid x\nfacet normal 0 0 0\nouter loop\nvertex 0 0 nan\n"), Limits{}, ErrMalformed, "line 4"},
		{"ascii overflow", "m.stl", []byte("solid x\nfacet normal 0 0 0\nouter loop\nvertex 0 0 1e39\n"), Limits{}, ErrMalformed, "line 4"},
		{"ascii two vertices", "m.stl", []byte("solid x\nfacet normal 0 0 0\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nendloop\n"), Limits{}, ErrMalformed, "line 6"},
		{"ascii truncated", "m.stl", []byte("solid x\nfacet normal 0 0 0\nouter loop\nvertex 0 0 0\n"), Limits{}, ErrMalformed, "ends inside a facet"},
		{"ascii garbage", "m.stl", []byte("solid x\nfacet normal 0 0 0\nhello\n"), Limits{}, ErrMalformed, `line 3: found "hello"`},
		{"ascii long line", "m.stl", []byte("solid " + strings.Repeat("x", 70000) + "\n"), Limits{}, ErrMalformed, "longer than"},
		{"obj index 1e12", "m.obj", []byte("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 1000000000000\n"), Limits{}, ErrMalformed, "line 4"},
		{"obj index 0", "m.obj", []byte("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n"), Limits{}, ErrMalformed, "index 0"},
		{"obj relative too far", "m.obj", []byte("v 0 0 0\nv 1 0 0\nv 0 1 0\nf -1 -2 -4\n"), Limits{}, ErrMalformed, "before the first vertex"},
		{"obj forward reference", "m.obj", []byte("v 0 0 0\nf 1 2 3\nv 1 0 0\nv 0 1 0\n"), Limits{}, ErrMalformed, "line 2"},
		{"obj two corners", "m.obj", []byte("v 0 0 0\nv 1 0 0\nf 1 2\n"), Limits{}, ErrMalformed, "line 3"},
		{"obj inf", "m.obj", []byte("v 0 inf 0\n"), Limits{}, ErrMalformed, "line 1"},
		{"obj short vertex", "m.obj", []byte("v 0 1\n"), Limits{}, ErrMalformed, "line 1"},
		{"obj bad index", "m.obj", []byte("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 x3\n"), Limits{}, ErrMalformed, "not a vertex index"},
		{"obj too many", "m.obj", objFile(cube), Limits{MaxTriangles: 5}, ErrTooLarge, "limit of 5"},
		{"3mf not a zip", "m.3mf", []byte("PK\x03\x04 not really"), Limits{}, ErrMalformed, "not a zip"},
		{"3mf escaping entry", "m.3mf", zipFiles(t, [2]string{"_rels/.rels", rootRels}, [2]string{"../../etc/x", "x"}, [2]string{"3D/3dmodel.model", bigModel}), Limits{}, ErrMalformed, "escapes the archive"},
		{"3mf absolute entry", "m.3mf", zipFiles(t, [2]string{"/3D/3dmodel.model", bigModel}), Limits{}, ErrMalformed, "escapes the archive"},
		{"3mf escaping target", "m.3mf", zipFiles(t, [2]string{"_rels/.rels", strings.Replace(rootRels, "/3D/3dmodel.model", "/../3D/3dmodel.model", 1)}, [2]string{"3D/3dmodel.model", bigModel}), Limits{}, ErrMalformed, "escapes the archive"},
		{"3mf missing part", "m.3mf", zipFiles(t, [2]string{"_rels/.rels", rootRels}), Limits{}, ErrMalformed, "missing"},
		{"3mf no rels", "m.3mf", zipFiles(t, [2]string{"x.txt", "x"}), Limits{}, ErrMalformed, "_rels/.rels"},
		{"3mf bad index", "m.3mf", zipFiles(t, [2]string{"_rels/.rels", rootRels}, [2]string{"3D/3dmodel.model", strings.Replace(bigModel, `v3="1"`, `v3="8"`, 1)}), Limits{}, ErrMalformed, "triangle"},
		{"3mf nan", "m.3mf", zipFiles(t, [2]string{"_rels/.rels", rootRels}, [2]string{"3D/3dmodel.model", strings.Replace(bigModel, `x="1"`, `x="NaN"`, 1)}), Limits{}, ErrMalformed, "vertex"},
		{"3mf unknown object", "m.3mf", zipFiles(t, [2]string{"_rels/.rels", rootRels}, [2]string{"3D/3dmodel.model", strings.Replace(bigModel, `item objectid="1"`, `item objectid="7"`, 1)}), Limits{}, ErrMalformed, `no object with id "7"`},
		{"3mf cycle", "m.3mf", zipFiles(t, [2]string{"_rels/.rels", rootRels}, [2]string{"3D/3dmodel.model", strings.Replace(bigModel, `</resources>`, `<object id="2"><components><component objectid="2"/></components></object></resources>`, 1)[:0] +
			strings.Replace(strings.Replace(bigModel, `</resources>`, `<object id="2"><components><component objectid="2"/></components></object></resources>`, 1), `item objectid="1"`, `item objectid="2"`, 1)}), Limits{}, ErrMalformed, "contains itself"},
		{"3mf bad unit", "m.3mf", zipFiles(t, [2]string{"_rels/.rels", rootRels}, [2]string{"3D/3dmodel.model", strings.Replace(bigModel, `millimeter`, `furlong`, 1)}), Limits{}, ErrMalformed, "unit"},
		{"3mf bad transform", "m.3mf", zipFiles(t, [2]string{"_rels/.rels", rootRels}, [2]string{"3D/3dmodel.model", modelXML(cube, "millimeter", "1 0 0 0 1 0 0 0 1 0 0")}), Limits{}, ErrMalformed, "12 numbers"},
		{"3mf no build", "m.3mf", zipFiles(t, [2]string{"_rels/.rels", rootRels}, [2]string{"3D/3dmodel.model", strings.Replace(bigModel, `<item objectid="1"/>`, ``, 1)}), Limits{}, ErrMalformed, "no build items"},
		{"3mf xml error", "m.3mf", zipFiles(t, [2]string{"_rels/.rels", rootRels}, [2]string{"3D/3dmodel.model", bigModel[:300]}), Limits{}, ErrMalformed, "line 1"},
		{"3mf deep xml", "m.3mf", zipFiles(t, [2]string{"_rels/.rels", rootRels}, [2]string{"3D/3dmodel.model", strings.Repeat("<a>", 1000)}), Limits{}, ErrMalformed, "nest more than"},
		{"3mf zip bomb", "m.3mf", zipFiles(t, [2]string{"_rels/.rels", rootRels}, [2]string{"3D/3dmodel.model", bigModel + strings.Repeat(" ", 8<<20)}), Limits{MaxBytes: 1 << 20}, ErrTooLarge, "decompress"},
		{"3mf too large", "m.3mf", threeMF(t, cube), Limits{MaxBytes: 100}, ErrTooLarge, "limit of 100"},
	}
	for _, c := range cases {
		for _, r := range []io.Reader{bytes.NewReader(c.data), sizeless{bytes.NewReader(c.data)}} {
			_, err := Parse(r, c.file, c.lim)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("%s (%T): error %v, want %v containing %q", c.name, r, err, c.want, c.msg)
			}
		}
	}
}
