// Package scad renders the corpus's OpenSCAD sources to binary STL.
package scad

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ficuslabs/ficus/pricing/mesh"
	"github.com/ficuslabs/ficus/pricing/slicer"
)

// Render runs OpenSCAD on src and writes a binary STL to dst (OpenSCAD
// 2021 writes ASCII STL only).
//
// timeout bounds OpenSCAD's run; zero means 5 minutes.
func Render(ctx context.Context, bin, src, dst string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tmp, err := os.MkdirTemp("", "ficus-corpus-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	ascii := filepath.Join(tmp, "out.stl")
	cmd := exec.CommandContext(ctx, bin, "-o", ascii, src)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("openscad %s: %v: %s", src, err, lastLine(out))
	}
	b, err := os.ReadFile(ascii)
	if err != nil {
		return err
	}
	bin2, err := asciiToBinary(b)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	return os.WriteFile(dst, bin2, 0o644)
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// asciiToBinary converts OpenSCAD's ASCII STL to binary STL, keeping
// each vertex as the float32 the text names (normals recomputed).
func asciiToBinary(b []byte) ([]byte, error) {
	var verts [][3]float32
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "vertex" {
			continue
		}
		var v [3]float32
		for i := range 3 {
			x, err := strconv.ParseFloat(f[i+1], 32)
			if err != nil {
				return nil, fmt.Errorf("ascii stl: %w", err)
			}
			v[i] = float32(x)
		}
		verts = append(verts, v)
	}
	if len(verts) == 0 || len(verts)%3 != 0 {
		return nil, errors.New("ascii stl: no triangles, or a broken one")
	}
	m := &mesh.Mesh{Vertices: verts}
	for t := range len(verts) / 3 {
		m.Triangles = append(m.Triangles, [3]uint32{uint32(3 * t), uint32(3*t + 1), uint32(3*t + 2)})
	}
	return slicer.EncodeSTL(m), nil
}
