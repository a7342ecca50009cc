// Command meshbench is bench/mesh.sh's helper: it writes the benchmark's
// model (a closed torus as a binary STL) and times ficus's pricing/mesh
// Parse and Analyze on a file.
//
//	meshbench gen -triangles 1000000 FILE
//	meshbench run [-rounds 3] [-cpuprofile FILE] FILE
//
// run prints one line per round: "seconds=S parse=S analyze=S" and, last,
// the analysis (triangles, volume, area, closed, manifold).
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/ficuslabs/ficus/pricing/mesh"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "meshbench:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: meshbench gen|run [flags] FILE")
	}
	switch args[0] {
	case "gen":
		fs := flag.NewFlagSet("gen", flag.ContinueOnError)
		tris := fs.Int("triangles", 1_000_000, "about how many triangles (rounded to a torus grid)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("usage: meshbench gen [-triangles N] FILE")
		}
		return gen(fs.Arg(0), *tris)
	case "run":
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		rounds := fs.Int("rounds", 1, "how many times to parse and analyse")
		prof := fs.String("cpuprofile", "", "write a CPU profile of the rounds to this file")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("usage: meshbench run [-rounds N] [-cpuprofile FILE] FILE")
		}
		return measure(out, fs.Arg(0), *rounds, *prof)
	default:
		return fmt.Errorf("unknown command %q (want gen or run)", args[0])
	}
}

// gen writes a torus (major radius 60 mm, minor 20 mm) of about n
// triangles as a binary STL.
func gen(path string, n int) error {
	nv := max(3, int(math.Sqrt(float64(n)/4)))
	nu := max(3, n/(2*nv))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var head [84]byte
	copy(head[:], "ficus bench/meshbench torus")
	binary.LittleEndian.PutUint32(head[80:], uint32(2*nu*nv))
	w.Write(head[:])
	const R, r = 60.0, 20.0
	at := func(i, j int) [3]float32 {
		u := 2 * math.Pi * float64(i%nu) / float64(nu)
		v := 2 * math.Pi * float64(j%nv) / float64(nv)
		return [3]float32{
			float32((R + r*math.Cos(v)) * math.Cos(u)),
			float32((R + r*math.Cos(v)) * math.Sin(u)),
			float32(r * math.Sin(v)),
		}
	}
	var rec [50]byte
	put := func(a, b, c [3]float32) {
		for k, p := range [3][3]float32{a, b, c} {
			for j := range 3 {
				binary.LittleEndian.PutUint32(rec[12+12*k+4*j:], math.Float32bits(p[j]))
			}
		}
		w.Write(rec[:])
	}
	for i := range nu {
		for j := range nv {
			p00, p10, p01, p11 := at(i, j), at(i+1, j), at(i, j+1), at(i+1, j+1)
			put(p00, p10, p11)
			put(p00, p11, p01)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func measure(out io.Writer, path string, rounds int, prof string) error {
	if prof != "" {
		pf, err := os.Create(prof)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var a mesh.Analysis
	for range max(rounds, 1) {
		start := time.Now()
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		m, err := mesh.Parse(f, filepath.Base(path), mesh.Limits{})
		f.Close()
		if err != nil {
			return err
		}
		parsed := time.Now()
		a = mesh.Analyze(m)
		done := time.Now()
		fmt.Fprintf(out, "seconds=%.4f parse=%.4f analyze=%.4f\n",
			done.Sub(start).Seconds(), parsed.Sub(start).Seconds(), done.Sub(parsed).Seconds())
	}
	fmt.Fprintf(out, "triangles=%d volume=%.6f area=%.6f closed=%v manifold=%v shells=%d\n",
		a.Triangles, a.Volume, a.Area, a.Closed, a.Manifold, a.Shells)
	return nil
}
