package mesh

import (
	"archive/zip"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// The 3MF core specification's names this parser relies on.
const (
	rel3DModel = "http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"
	nsProd     = "http://schemas.microsoft.com/3dmanufacturing/production/2015/06"
	// maxXMLDepth bounds element nesting; real 3MF files nest about six
	// deep.
	maxXMLDepth = 256
	// maxComponentDepth bounds how deep components may nest.
	maxComponentDepth = 64
)

// units converts a 3MF model's unit to millimetres.
var units = map[string]float64{
	"micron": 0.001, "millimeter": 1, "centimeter": 10,
	"inch": 25.4, "foot": 304.8, "meter": 1000,
}

// parse3MF reads a 3MF archive: the model part named by _rels/.rels, its
// objects (meshes and components, including components in other model
// parts of the production extension) and its build items, with every
// transform applied and the unit converted to millimetres. The archive is
// read into memory (at most lim.MaxBytes); decompressed entries together
// are bounded by lim.MaxBytes too.
func parse3MF(r io.Reader, lim Limits) (*Mesh, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, fmt.Errorf("3mf: %w", err)
		}
		return nil, fmt.Errorf("3mf: read: %w", err)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: 3mf: not a zip archive: %v", ErrMalformed, err)
	}
	p := &pkg{lim: lim, budget: lim.MaxBytes, files: map[string]*zip.File{}, parts: map[string]*part{}}
	for _, f := range zr.File {
		name := strings.ReplaceAll(f.Name, `\`, "/")
		if !safeName(name) {
			return nil, fmt.Errorf("%w: 3mf: entry %q escapes the archive", ErrMalformed, clip([]byte(f.Name)))
		}
		p.files[strings.ToLower(path.Clean(name))] = f
	}
	root, err := p.rootPart()
	if err != nil {
		return nil, err
	}
	rp, err := p.part(root)
	if err != nil {
		return nil, err
	}
	if len(rp.build) == 0 {
		return nil, fmt.Errorf("%w: 3mf %s: no build items", ErrMalformed, root)
	}
	// Count what the build expands to before expanding anything:
	// components may place one object many times.
	var total, verts int64
	for _, it := range rp.build {
		o, err := p.object(rp, it.path, it.objectID)
		if err != nil {
			return nil, fmt.Errorf("3mf build item %s: %w", it.objectID, err)
		}
		n, err := p.count(o, 0)
		if err != nil {
			return nil, fmt.Errorf("3mf build item %s: %w", it.objectID, err)
		}
		total += n.tris
		verts += n.verts
		if total > int64(lim.MaxTriangles) {
			return nil, fmt.Errorf("%w: 3mf: the build has more than the limit of %d triangles", ErrTooLarge, lim.MaxTriangles)
		}
		if verts > p.maxVerts() {
			return nil, fmt.Errorf("%w: 3mf: the build has more than %d vertices (3 × the triangle limit)", ErrTooLarge, p.maxVerts())
		}
	}
	m := &Mesh{
		Vertices:  make([][3]float32, 0, min(3*total, 1<<20)),
		Triangles: make([][3]uint32, 0, total),
	}
	for _, it := range rp.build {
		o, _ := p.object(rp, it.path, it.objectID)
		if err := p.emit(m, o, it.xf, rp.scale); err != nil {
			return nil, fmt.Errorf("3mf build item %s: %w", it.objectID, err)
		}
	}
	return m, nil
}

// safeName reports whether a zip entry name stays inside the archive.
func safeName(name string) bool {
	if name == "" || strings.HasPrefix(name, "/") || (len(name) >= 2 && name[1] == ':') {
		return false
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == ".." {
			return false
		}
	}
	return true
}

type pkg struct {
	lim    Limits
	budget int64 // decompressed bytes left
	files  map[string]*zip.File
	parts  map[string]*part
}

type part struct {
	name    string
	scale   float64
	objects map[string]*object
	build   []ref
}

type object struct {
	id      string
	part    *part
	verts   [][3]float32
	tris    [][3]uint32
	comps   []ref
	count   counts // with components expanded; tris -1 while counting
	counted bool
}

// ref is a build item or a component: an object, in this part or another
// (path), placed by a transform.
type ref struct {
	objectID string
	path     string
	xf       xform
}

// xform is a 3MF affine transform "m00 m01 m02 m10 m11 m12 m20 m21 m22
// m30 m31 m32": a point (x y z 1) as a row vector times the matrix.
type xform [12]float64

var identity = xform{1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0}

func (a xform) apply(v [3]float32) [3]float64 {
	x, y, z := float64(v[0]), float64(v[1]), float64(v[2])
	return [3]float64{
		x*a[0] + y*a[3] + z*a[6] + a[9],
		x*a[1] + y*a[4] + z*a[7] + a[10],
		x*a[2] + y*a[5] + z*a[8] + a[11],
	}
}

// then returns the transform that applies a, then b.
func (a xform) then(b xform) xform {
	var c xform
	for i := range 4 {
		for j := range 3 {
			var s float64
			for k := range 3 {
				s += a[3*i+k] * b[3*k+j]
			}
			if i == 3 {
				s += b[9+j]
			}
			c[3*i+j] = s
		}
	}
	return c
}

func (p *pkg) rootPart() (string, error) {
	f := p.files["_rels/.rels"]
	if f == nil {
		if p.files["3d/3dmodel.model"] != nil {
			return "3D/3dmodel.model", nil
		}
		return "", fmt.Errorf("%w: 3mf: no _rels/.rels (not a 3MF package)", ErrMalformed)
	}
	rc, err := p.open(f)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	var rels struct {
		Rel []struct {
			Target string `xml:"Target,attr"`
			Type   string `xml:"Type,attr"`
		} `xml:"Relationship"`
	}
	if err := xml.NewDecoder(rc).Decode(&rels); err != nil {
		if errors.Is(err, ErrTooLarge) {
			return "", err
		}
		return "", fmt.Errorf("%w: 3mf _rels/.rels: %v", ErrMalformed, err)
	}
	for _, r := range rels.Rel {
		if r.Type == rel3DModel {
			return partName(r.Target)
		}
	}
	return "", fmt.Errorf("%w: 3mf _rels/.rels names no 3D model part", ErrMalformed)
}

// partName turns a relationship target or a p:path into an archive entry
// name; a target that climbs out of the package is an error.
func partName(target string) (string, error) {
	t, err := url.PathUnescape(target)
	if err != nil {
		return "", fmt.Errorf("%w: 3mf: part name %q: %v", ErrMalformed, clip([]byte(target)), err)
	}
	t = strings.TrimPrefix(strings.ReplaceAll(t, `\`, "/"), "/")
	if !safeName(t) {
		return "", fmt.Errorf("%w: 3mf: part name %q escapes the archive", ErrMalformed, clip([]byte(target)))
	}
	return path.Clean(t), nil
}

// open opens an entry for reading within the decompressed-bytes budget.
func (p *pkg) open(f *zip.File) (io.ReadCloser, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("%w: 3mf entry %s: %v", ErrMalformed, f.Name, err)
	}
	return budgetReader{ReadCloser: rc, p: p}, nil
}

type budgetReader struct {
	io.ReadCloser
	p *pkg
}

func (b budgetReader) Read(buf []byte) (int, error) {
	if b.p.budget <= 0 {
		var one [1]byte
		if n, _ := b.ReadCloser.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("%w: 3mf: entries decompress to more than the limit of %d bytes", ErrTooLarge, b.p.lim.MaxBytes)
		}
	}
	if int64(len(buf)) > b.p.budget {
		buf = buf[:max(b.p.budget, 1)]
	}
	n, err := b.ReadCloser.Read(buf)
	b.p.budget -= int64(n)
	return n, err
}

// part reads and parses a model part once.
func (p *pkg) part(name string) (*part, error) {
	key := strings.ToLower(name)
	if pt, ok := p.parts[key]; ok {
		return pt, nil
	}
	f := p.files[key]
	if f == nil {
		return nil, fmt.Errorf("%w: 3mf: model part %s is missing", ErrMalformed, name)
	}
	rc, err := p.open(f)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	pt, err := p.parseModel(name, rc)
	if err != nil {
		return nil, err
	}
	p.parts[key] = pt
	return pt, nil
}

// object finds an object by id in the part named by path, or in from when
// path is empty.
func (p *pkg) object(from *part, partPath, id string) (*object, error) {
	pt := from
	if partPath != "" {
		name, err := partName(partPath)
		if err != nil {
			return nil, err
		}
		if pt, err = p.part(name); err != nil {
			return nil, err
		}
	}
	o := pt.objects[id]
	if o == nil {
		return nil, fmt.Errorf("%w: 3mf %s: no object with id %q", ErrMalformed, pt.name, clip([]byte(id)))
	}
	return o, nil
}

// counts are the triangles and vertices an object stands for.
type counts struct{ tris, verts int64 }

// maxVerts is the most vertices an expanded build may have.
func (p *pkg) maxVerts() int64 { return 3*int64(p.lim.MaxTriangles) + 3 }

// count returns the triangles and vertices o stands for with its
// components expanded, saturating above the limits, and finds component
// cycles.
func (p *pkg) count(o *object, depth int) (counts, error) {
	if o.counted {
		if o.count.tris < 0 {
			return counts{}, fmt.Errorf("%w: 3mf: object %s contains itself through its components", ErrMalformed, o.id)
		}
		return o.count, nil
	}
	if depth > maxComponentDepth {
		return counts{}, fmt.Errorf("%w: 3mf: components nest more than %d deep", ErrMalformed, maxComponentDepth)
	}
	o.counted, o.count = true, counts{tris: -1}
	var n counts
	if len(o.tris) > 0 {
		n = counts{tris: int64(len(o.tris)), verts: int64(len(o.verts))}
	}
	for _, c := range o.comps {
		co, err := p.object(o.part, c.path, c.objectID)
		if err != nil {
			return counts{}, err
		}
		k, err := p.count(co, depth+1)
		if err != nil {
			return counts{}, err
		}
		n.tris = min(n.tris+k.tris, int64(p.lim.MaxTriangles)+1)
		n.verts = min(n.verts+k.verts, p.maxVerts()+1)
	}
	o.count = n
	return n, nil
}

// emit appends o's triangles, placed by xf and scaled to millimetres.
func (p *pkg) emit(m *Mesh, o *object, xf xform, scale float64) error {
	if len(o.tris) > 0 {
		base := uint32(len(m.Vertices))
		exact := xf == identity && scale == 1
		for i, v := range o.verts {
			if !exact {
				w := xf.apply(v)
				for j := range 3 {
					v[j] = float32(w[j] * scale)
				}
				if !finite(v[0]) || !finite(v[1]) || !finite(v[2]) {
					return fmt.Errorf("%w: 3mf object %s: vertex %d is out of range once transformed", ErrMalformed, o.id, i)
				}
			}
			m.Vertices = append(m.Vertices, v)
		}
		for _, t := range o.tris {
			m.Triangles = append(m.Triangles, [3]uint32{base + t[0], base + t[1], base + t[2]})
		}
	}
	for _, c := range o.comps {
		co, err := p.object(o.part, c.path, c.objectID)
		if err != nil {
			return err
		}
		if err := p.emit(m, co, c.xf.then(xf), scale); err != nil {
			return err
		}
	}
	return nil
}

// parseModel reads a 3MF model part's resources and build.
func (p *pkg) parseModel(name string, r io.Reader) (*part, error) {
	pt := &part{name: name, scale: 1, objects: map[string]*object{}}
	d := xml.NewDecoder(r)
	var stack []string
	var cur *object
	tris := 0
	bad := func(format string, args ...any) error {
		line, _ := d.InputPos()
		return fmt.Errorf("%w: 3mf %s line %d: %s", ErrMalformed, name, line, fmt.Sprintf(format, args...))
	}
	parent := func() string {
		if len(stack) < 2 {
			return ""
		}
		return stack[len(stack)-2]
	}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				return nil, err
			}
			return nil, bad("%v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			stack = append(stack, t.Name.Local)
			if len(stack) > maxXMLDepth {
				return nil, bad("elements nest more than %d deep", maxXMLDepth)
			}
			switch t.Name.Local {
			case "model":
				if len(stack) != 1 {
					break
				}
				if u := attr(t, "unit"); u != "" {
					s, ok := units[u]
					if !ok {
						return nil, bad("unknown unit %q", clip([]byte(u)))
					}
					pt.scale = s
				}
			case "object":
				if parent() != "resources" {
					break
				}
				id := attr(t, "id")
				if id == "" {
					return nil, bad("an object without an id")
				}
				if pt.objects[id] != nil {
					return nil, bad("two objects with id %q", clip([]byte(id)))
				}
				cur = &object{id: id, part: pt}
				pt.objects[id] = cur
			case "vertex":
				if parent() != "vertices" || cur == nil {
					break
				}
				var v [3]float32
				for j, a := range [3]string{"x", "y", "z"} {
					f, err := parseFloat32([]byte(attr(t, a)))
					if err != nil {
						return nil, bad("object %s vertex %d: %s=%q: %v", cur.id, len(cur.verts), a, clip([]byte(attr(t, a))), err)
					}
					v[j] = f
				}
				if len(cur.verts) >= 3*p.lim.MaxTriangles+3 {
					return nil, fmt.Errorf("%w: 3mf %s: object %s has more than %d vertices", ErrTooLarge, name, cur.id, 3*p.lim.MaxTriangles+3)
				}
				cur.verts = append(cur.verts, v)
			case "triangle":
				if parent() != "triangles" || cur == nil {
					break
				}
				var tr [3]uint32
				for j, a := range [3]string{"v1", "v2", "v3"} {
					s := attr(t, a)
					i, err := strconv.ParseUint(s, 10, 32)
					if err != nil || i >= uint64(len(cur.verts)) {
						return nil, bad("object %s triangle %d: %s=%q is not one of its %d vertices", cur.id, len(cur.tris), a, clip([]byte(s)), len(cur.verts))
					}
					tr[j] = uint32(i)
				}
				if tris++; tris > p.lim.MaxTriangles {
					return nil, fmt.Errorf("%w: 3mf %s: more than the limit of %d triangles", ErrTooLarge, name, p.lim.MaxTriangles)
				}
				cur.tris = append(cur.tris, tr)
			case "component":
				if parent() != "components" || cur == nil {
					break
				}
				c, err := readRef(t)
				if err != nil {
					return nil, bad("object %s component: %v", cur.id, err)
				}
				cur.comps = append(cur.comps, c)
			case "item":
				if parent() != "build" {
					break
				}
				it, err := readRef(t)
				if err != nil {
					return nil, bad("build item: %v", err)
				}
				pt.build = append(pt.build, it)
			}
		case xml.EndElement:
			if len(stack) > 0 {
				if stack[len(stack)-1] == "object" && cur != nil && parent() == "resources" {
					cur = nil
				}
				stack = stack[:len(stack)-1]
			}
		}
	}
	return pt, nil
}

// readRef reads a component's or build item's objectid, transform and
// p:path.
func readRef(t xml.StartElement) (ref, error) {
	r := ref{objectID: attr(t, "objectid"), xf: identity}
	if r.objectID == "" {
		return r, errors.New("no objectid")
	}
	for _, a := range t.Attr {
		if a.Name.Local == "path" && a.Name.Space == nsProd {
			r.path = a.Value
		}
	}
	if s := attr(t, "transform"); s != "" {
		f := strings.Fields(s)
		if len(f) != 12 {
			return r, fmt.Errorf("transform %q: want 12 numbers, found %d", clip([]byte(s)), len(f))
		}
		for i, x := range f {
			v, err := strconv.ParseFloat(x, 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return r, fmt.Errorf("transform %q: %q is not a finite number", clip([]byte(s)), clip([]byte(x)))
			}
			r.xf[i] = v
		}
	}
	return r, nil
}

// attr returns the value of an attribute without a namespace.
func attr(t xml.StartElement, name string) string {
	for _, a := range t.Attr {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}
