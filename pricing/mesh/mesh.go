// Package mesh reads triangle meshes from model files (STL, OBJ, 3MF) and
// measures them: volume, surface area, bounding box, shells, closedness.
//
// Vertices are kept as the file gives them (float32, millimetres); every
// measure is computed in float64 from those exact values. See
// docs/pricing-mesh.md.
package mesh

import (
	"errors"
	"fmt"
	"io"
	"os"
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
	// them (3MF: placed by the build's transforms and converted from its
	// unit). A file may repeat one position under several indices; the
	// binary STL reader gives corners at one position one vertex (-0 read
	// as +0).
	Vertices [][3]float32
	// Triangles index Vertices, counter-clockwise seen from outside.
	Triangles [][3]uint32
}

// Limits bound what a parser accepts. Zero fields take their defaults.
type Limits struct {
	// MaxBytes is the largest file read. For 3MF it also bounds the
	// decompressed bytes of all the archive's entries read together.
	// Defaults to 256 MiB.
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

// Formats lists the file name extensions Parse reads.
var formats = []string{".stl", ".obj", ".3mf"}

// Parse reads a model; name's extension (.stl, .obj, .3mf, any case)
// picks the format. It reads at most lim.MaxBytes from r. STL and OBJ are
// read as a stream; a 3MF archive is read into memory first (a zip needs
// random access).
//
// When r also tells its size (Size() int64, as *bytes.Reader,
// *strings.Reader, *io.SectionReader and gocloud.dev/blob's Reader do, or
// an *os.File), an STL that starts with "solid" is binary exactly when its
// size is 84 + 50 × its triangle count; otherwise the text after the
// first line decides.
//
// Errors wrap ErrFormat, ErrMalformed or ErrTooLarge.
func Parse(r io.Reader, name string, lim Limits) (*Mesh, error) {
	lim = lim.withDefaults()
	size := sizeOf(r)
	if size > lim.MaxBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than the limit of %d", ErrTooLarge, name, size, lim.MaxBytes)
	}
	lr := &limitReader{r: r, left: lim.MaxBytes, max: lim.MaxBytes}
	switch ext := strings.ToLower(path.Ext(name)); ext {
	case ".stl":
		return parseSTL(lr, size, lim)
	case ".obj":
		return parseOBJ(lr, lim)
	case ".3mf":
		return parse3MF(lr, lim)
	default:
		return nil, fmt.Errorf("%w: %q (want one of %s)", ErrFormat, ext, strings.Join(formats, ", "))
	}
}

// sizeOf returns r's size when r can tell it, else -1.
func sizeOf(r io.Reader) int64 {
	switch v := r.(type) {
	case interface{ Size() int64 }:
		return v.Size()
	case *os.File:
		if fi, err := v.Stat(); err == nil && fi.Mode().IsRegular() {
			if off, err := v.Seek(0, io.SeekCurrent); err == nil {
				return fi.Size() - off
			}
		}
	}
	return -1
}

// limitReader reads at most left bytes and fails with ErrTooLarge when the
// underlying reader has more.
type limitReader struct {
	r    io.Reader
	left int64
	max  int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One more byte tells a file of exactly the limit from a longer one.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("%w: more than the limit of %d bytes", ErrTooLarge, l.max)
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// finite reports whether f is neither NaN nor infinite.
func finite(f float32) bool {
	return f-f == 0
}
