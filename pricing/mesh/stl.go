package mesh

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// stlRecord is the size of one binary STL triangle: normal, three
// vertices, attribute byte count.
const stlRecord = 50

// parseSTL reads a binary or ASCII STL; size is the file's size or -1.
func parseSTL(r io.Reader, size int64, lim Limits) (*Mesh, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	head, err := br.Peek(84)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("stl: %w", err)
	}
	text := bytes.TrimPrefix(head, []byte("\xef\xbb\xbf"))
	if !bytes.HasPrefix(bytes.TrimLeft(text, " \t\r\n"), []byte("solid")) {
		return parseBinarySTL(br, size, lim)
	}
	if len(head) == 84 {
		n := int64(binary.LittleEndian.Uint32(head[80:]))
		if size >= 0 {
			if size == 84+stlRecord*n {
				return parseBinarySTL(br, size, lim)
			}
		} else if !looksASCII(br) {
			return parseBinarySTL(br, size, lim)
		}
	}
	return parseASCIISTL(br, lim)
}

// looksASCII decides, for a file that starts with "solid" and whose size
// is unknown, whether the text after the first line is an ASCII STL: its
// next word is "facet" or "endsolid". A binary header that starts with
// "solid" is followed by binary triangles instead.
func looksASCII(br *bufio.Reader) bool {
	buf, _ := br.Peek(4096)
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		// No line end in 4 KiB (or in the whole, short file): a binary
		// file has bytes 80..83 as its count, which rarely spells a
		// whole line; a tiny ASCII file "solid x" without newline is
		// also an empty solid.
		return len(buf) < 84 || !bytes.ContainsFunc(buf, isBinaryByte)
	}
	rest := bytes.TrimLeft(buf[i+1:], " \t\r\n")
	return bytes.HasPrefix(rest, []byte("facet")) || bytes.HasPrefix(rest, []byte("endsolid"))
}

func isBinaryByte(r rune) bool {
	return r < 0x20 && r != '\n' && r != '\r' && r != '\t' && r != '\f' && r != '\v'
}

func parseBinarySTL(br *bufio.Reader, size int64, lim Limits) (*Mesh, error) {
	var head [84]byte
	if n, err := io.ReadFull(br, head[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: binary stl: the file ends after %d bytes, inside the 84-byte header", ErrMalformed, n)
		}
		return nil, fmt.Errorf("binary stl header: %w", err)
	}
	n := int64(binary.LittleEndian.Uint32(head[80:]))
	if n > int64(lim.MaxTriangles) {
		return nil, fmt.Errorf("%w: binary stl claims %d triangles, more than the limit of %d", ErrTooLarge, n, lim.MaxTriangles)
	}
	if size >= 0 && size < 84+stlRecord*n {
		return nil, fmt.Errorf("%w: binary stl claims %d triangles (%d bytes) but the file has %d bytes: truncated, or not an stl",
			ErrMalformed, n, 84+stlRecord*n, size)
	}
	// The count is only trusted for allocation once the file's size backs it.
	reserve := min(n, 1<<16)
	if size >= 0 {
		reserve = n
	}
	// Corners at one position share a vertex, welded as Analyze welds
	// them: a closed mesh has about half as many positions as triangles,
	// so this keeps a sixth of the vertices an unwelded mesh would.
	m := &Mesh{Triangles: make([][3]uint32, 0, reserve)}
	w := newWelder(int(reserve / 2))
	var (
		keys   [weldBlock][3]float32
		hashes [weldBlock]uint64
		ids    [weldBlock]int32
	)
	// Chunks larger than br's buffer are read straight into buf.
	const chunk = 2048
	buf := make([]byte, chunk*stlRecord)
	for done := int64(0); done < n; {
		want := min(n-done, chunk)
		got, err := io.ReadFull(br, buf[:want*stlRecord])
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%w: binary stl claims %d triangles but ends inside triangle %d", ErrMalformed, n, done+int64(got)/stlRecord)
			}
			return nil, fmt.Errorf("binary stl triangle %d: %w", done+int64(got)/stlRecord, err)
		}
		// weldBlock corners (a multiple of 3) at a time.
		for lo := int64(0); lo < want; lo += weldBlock / 3 {
			hi := min(lo+weldBlock/3, want)
			c := 0
			for i := lo; i < hi; i++ {
				rec := buf[i*stlRecord+12 : i*stlRecord+48]
				for k := range 3 {
					var v [3]float32
					for j := range 3 {
						b := binary.LittleEndian.Uint32(rec[12*k+4*j:])
						if b&0x7f800000 == 0x7f800000 {
							return nil, fmt.Errorf("%w: binary stl triangle %d: vertex %d has a non-finite coordinate (%v)",
								ErrMalformed, done+i, k+1, math.Float32frombits(b))
						}
						if b == 1<<31 {
							b = 0 // -0 is +0
						}
						v[j] = math.Float32frombits(b)
					}
					keys[c], hashes[c] = v, hashKey(v)
					c++
				}
			}
			w.ids(keys[:c], hashes[:c], ids[:c])
			for i := 0; i < c; i += 3 {
				m.Triangles = append(m.Triangles, [3]uint32{uint32(ids[i]), uint32(ids[i+1]), uint32(ids[i+2])})
			}
		}
		done += want
	}
	m.Vertices = w.keys // the distinct positions, by id
	return m, nil
}

// parseASCIISTL reads "solid ... facet normal ... outer loop vertex x y z
// ... endloop endfacet ... endsolid", one or more solids. Normals are
// read but not used. A loop of more than three vertices is split into a
// fan of triangles.
func parseASCIISTL(br *bufio.Reader, lim Limits) (*Mesh, error) {
	m := &Mesh{}
	lr := lineReader{br: br}
	const (
		outside = iota // before "solid" or after "endsolid"
		inSolid        // expecting "facet" or "endsolid"
		inFacet        // expecting "outer loop" or "endfacet"
		inLoop         // expecting "vertex" or "endloop"
	)
	state := outside
	solids := 0
	var loop [][3]float32
	for {
		f, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("ascii stl: %w", err)
		}
		if len(f) == 0 {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: ascii stl line %d: %s", ErrMalformed, lr.line, fmt.Sprintf(format, args...))
		}
		word := string(f[0])
		switch {
		case state == outside && word == "solid":
			state = inSolid
			solids++
		case state == inSolid && word == "endsolid":
			state = outside
		case state == inSolid && word == "facet":
			state = inFacet
		case state == inFacet && word == "outer":
			if len(f) < 2 || string(f[1]) != "loop" {
				return nil, bad(`want "outer loop"`)
			}
			state = inLoop
			loop = loop[:0]
		case state == inFacet && word == "endfacet":
			state = inSolid
		case state == inLoop && word == "vertex":
			if len(f) != 4 {
				return nil, bad("a vertex needs three coordinates, found %d", len(f)-1)
			}
			var v [3]float32
			for j := range 3 {
				x, err := parseFloat32(f[1+j])
				if err != nil {
					return nil, bad("vertex coordinate %q: %v", f[1+j], err)
				}
				v[j] = x
			}
			if len(loop) >= 1<<16 {
				return nil, bad("a loop of more than %d vertices", 1<<16)
			}
			loop = append(loop, v)
		case state == inLoop && word == "endloop":
			if len(loop) < 3 {
				return nil, bad("a loop needs at least three vertices, found %d", len(loop))
			}
			if len(m.Triangles)+len(loop)-2 > lim.MaxTriangles {
				return nil, fmt.Errorf("%w: ascii stl has more than the limit of %d triangles (line %d)", ErrTooLarge, lim.MaxTriangles, lr.line)
			}
			base := uint32(len(m.Vertices))
			m.Vertices = append(m.Vertices, loop...)
			for k := 1; k+1 < len(loop); k++ {
				m.Triangles = append(m.Triangles, [3]uint32{base, base + uint32(k), base + uint32(k+1)})
			}
			state = inFacet
		default:
			want := map[int]string{
				outside: `"solid"`,
				inSolid: `"facet" or "endsolid"`,
				inFacet: `"outer loop" or "endfacet"`,
				inLoop:  `"vertex" or "endloop"`,
			}[state]
			return nil, bad("found %q, want %s", clip(f[0]), want)
		}
	}
	switch {
	case solids == 0:
		return nil, fmt.Errorf("%w: ascii stl: no solid", ErrMalformed)
	case state != outside && state != inSolid:
		return nil, fmt.Errorf("%w: ascii stl: the file ends inside a facet (line %d)", ErrMalformed, lr.line)
	}
	return m, nil
}

// clip shortens a word for an error message.
func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
