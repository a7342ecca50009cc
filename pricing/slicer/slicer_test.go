package slicer

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/mesh"
)

const shapes = "/usr/share/PrusaSlicer/shapes"

// needPrusaSlicer skips the test when prusa-slicer is not installed,
// unless FICUS_REQUIRE_TOOLS=1.
func needPrusaSlicer(t *testing.T) {
	t.Helper()
	_, err := exec.LookPath("prusa-slicer")
	if err == nil {
		_, err = os.Stat(shapes)
	}
	if err != nil {
		if os.Getenv("FICUS_REQUIRE_TOOLS") == "1" {
			t.Fatalf("prusa-slicer and its shapes are required: %v", err)
		}
		t.Skipf("prusa-slicer not installed: %v", err)
	}
}

func newSlicer(t *testing.T, cfg Config) *Slicer {
	t.Helper()
	cfg.TempDir = cmpStr(cfg.TempDir, t.TempDir())
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func cmpStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func loadModel(t *testing.T, name string) *pricing.Model {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(shapes, name))
	if err != nil {
		t.Fatal(err)
	}
	m, err := mesh.Parse(bytes.NewReader(b), name, mesh.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return &pricing.Model{Key: name, Data: b, Mesh: m, Analysis: mesh.Analyze(m)}
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	left, _ := os.ReadDir(dir)
	if len(left) != 0 {
		t.Errorf("%d files left in the temp dir, e.g. %s", len(left), left[0].Name())
	}
}

var pla = pricing.Material{Name: "PLA", Density: 1.24}

func TestSliceShapes(t *testing.T) {
	needPrusaSlicer(t)
	tmp := t.TempDir()
	s := newSlicer(t, Config{TempDir: tmp})
	for _, tc := range []struct {
		file     string
		min, max time.Duration
	}{
		{"box.stl", 30 * time.Minute, 45 * time.Minute},
		{"pyramid.stl", 5 * time.Minute, 2 * time.Hour},
		{"M3_hex_nut.stl", time.Minute, 30 * time.Minute},
	} {
		t.Run(tc.file, func(t *testing.T) {
			m := loadModel(t, tc.file)
			e, err := s.Estimate(context.Background(), m, pla)
			if err != nil {
				t.Fatal(err)
			}
			if e.PrintTime < tc.min || e.PrintTime > tc.max {
				t.Errorf("print time %v, want within [%v, %v]", e.PrintTime, tc.min, tc.max)
			}
			// The filament is at least the shell and at most the solid.
			solid := m.Analysis.Volume / 1000 * pla.Density
			if e.FilamentGrams < solid*0.1 || e.FilamentGrams > solid*1.3+1 {
				t.Errorf("filament %.2f g, the solid part weighs %.2f g", e.FilamentGrams, solid)
			}
		})
	}
	assertEmpty(t, tmp)
}

// The box (25 mm cube) weighs twice as much in a material twice as dense,
// and takes as long; a mesh without the file's bytes slices the same.
func TestSliceDensityAndMesh(t *testing.T) {
	needPrusaSlicer(t)
	s := newSlicer(t, Config{})
	m := loadModel(t, "box.stl")
	light, err := s.Estimate(context.Background(), m, pla)
	if err != nil {
		t.Fatal(err)
	}
	heavy, err := s.Estimate(context.Background(), &pricing.Model{Key: "box", Mesh: m.Mesh, Analysis: m.Analysis},
		pricing.Material{Name: "heavy", Density: 2 * pla.Density})
	if err != nil {
		t.Fatal(err)
	}
	if heavy.PrintTime != light.PrintTime || math.Abs(heavy.FilamentGrams-2*light.FilamentGrams) > 0.02 {
		t.Errorf("light %+v, heavy %+v: want the same time and twice the grams", light, heavy)
	}
}

func cube(x, y, z float32) *mesh.Mesh {
	v := [][3]float32{{0, 0, 0}, {x, 0, 0}, {x, y, 0}, {0, y, 0}, {0, 0, z}, {x, 0, z}, {x, y, z}, {0, y, z}}
	return &mesh.Mesh{Vertices: v, Triangles: [][3]uint32{
		{0, 2, 1}, {0, 3, 2}, {4, 5, 6}, {4, 6, 7}, {0, 1, 5}, {0, 5, 4},
		{1, 2, 6}, {1, 6, 5}, {2, 3, 7}, {2, 7, 6}, {3, 0, 4}, {3, 4, 7}}}
}

// A 10 mm cube written with zero normals has no byte above 127 after
// its header, and PrusaSlicer takes it for ASCII and fails; the slicer
// re-encodes STL models with real normals, so it slices.
func TestSliceSmallWholeNumberCube(t *testing.T) {
	needPrusaSlicer(t)
	s := newSlicer(t, Config{})
	c := cube(10, 10, 10)
	zeroNormals := EncodeSTL(c)
	for i := range c.Triangles {
		clear(zeroNormals[84+50*i : 84+50*i+12])
	}
	m := &pricing.Model{Key: "cube.stl", Data: zeroNormals}
	if _, err := s.Estimate(context.Background(), m, pla); !errors.Is(err, pricing.ErrRejected) {
		t.Fatalf("PrusaSlicer read a zero-normal 10 mm cube (err = %v): drop the workaround?", err)
	}
	m.Mesh = c
	e, err := s.Estimate(context.Background(), m, pla)
	if err != nil {
		t.Fatal(err)
	}
	if e.PrintTime < 5*time.Minute || e.PrintTime > 20*time.Minute || e.FilamentGrams < 0.5 || e.FilamentGrams > 1.5 {
		t.Errorf("10 mm cube: %+v", e)
	}
}

func TestSliceRejects(t *testing.T) {
	needPrusaSlicer(t)
	tmp := t.TempDir()
	s := newSlicer(t, Config{TempDir: tmp})
	wide := cube(300, 20, 10)
	tall := cube(20, 20, 300)
	for _, tc := range []struct {
		name string
		m    *pricing.Model
		mat  pricing.Material
		msg  string
	}{
		{"empty file", &pricing.Model{Key: "a.stl", Data: []byte{}}, pla, "no model data"},
		{"all-NUL file", &pricing.Model{Key: "a.stl", Data: make([]byte, 84)}, pla, "empty file"},
		{"garbage", &pricing.Model{Key: "a.obj", Data: []byte("not a model")}, pla, "refused"},
		{"unknown extension", &pricing.Model{Key: "a.exe", Data: []byte("MZ")}, pla, "no model data"},
		{"wider than the bed", &pricing.Model{Key: "wide", Mesh: wide}, pla, "could not fit on the bed"},
		{"taller than the printer", &pricing.Model{Key: "tall", Mesh: tall, Analysis: mesh.Analyze(tall)}, pla, "300.0 mm tall"},
		{"thinner than a layer", &pricing.Model{Key: "flat", Mesh: cube(10, 10, 0.05)}, pla, "No layers"},
		{"no density", &pricing.Model{Key: "c", Mesh: cube(10, 10, 10)}, pricing.Material{Name: "air"}, "density"},
		{"NaN density", &pricing.Model{Key: "c", Mesh: cube(10, 10, 10)}, pricing.Material{Density: math.NaN()}, "density"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Estimate(context.Background(), tc.m, tc.mat)
			if !errors.Is(err, pricing.ErrRejected) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want ErrRejected saying %q", err, tc.msg)
			}
		})
	}
	assertEmpty(t, tmp)
}

// fakeSlicer writes a shell script standing in for prusa-slicer: it runs
// body with $out set to the --output argument.
func fakeSlicer(t *testing.T, body string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "fake-slicer")
	script := "#!/bin/sh\nwhile [ $# -gt 0 ]; do if [ \"$1\" = --output ]; then out=$2; fi; shift; done\n" + body + "\n"
	// A child process writes the script, so this process never holds it
	// open for writing: a parallel test's fork would inherit that
	// descriptor, and running the script while the forked child still
	// holds it fails with "text file busy" (golang.org/issue/22315).
	write := exec.Command("/bin/sh", "-c", `cat > "$1" && chmod 755 "$1"`, "sh", name)
	write.Stdin = strings.NewReader(script)
	if out, err := write.CombinedOutput(); err != nil {
		t.Fatalf("write %s: %v: %s", name, err, out)
	}
	return name
}

var box = &pricing.Model{Key: "box.stl", Data: make([]byte, 84)}

func TestSliceFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		is         error
		msg        string
	}{
		{"crash", "echo loading >&2; i=0; while [ $i -lt 200 ]; do echo noise line $i >&2; i=$((i+1)); done; echo 'segfault at 0x0' >&2; exit 139",
			ErrFailed, "segfault at 0x0"},
		{"no summary", "echo G1 X1 > \"$out\"", ErrNoSummary, "estimated printing time"},
		{"no output", "exit 0", ErrFailed, "read g-code"},
		{"summary", "printf '; filament used [g] = 2.5\\n; estimated printing time (normal mode) = 1h 2s\\n' > \"$out\"", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			s := newSlicer(t, Config{Binary: fakeSlicer(t, tc.body), TempDir: tmp})
			e, err := s.Estimate(context.Background(), box, pla)
			if tc.is == nil {
				if err != nil || e.PrintTime != time.Hour+2*time.Second || e.FilamentGrams != 2.5 {
					t.Fatalf("got %+v, %v", e, err)
				}
			} else if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) || errors.Is(err, pricing.ErrRejected) {
				t.Fatalf("err = %v, want %v saying %q", err, tc.is, tc.msg)
			}
			assertEmpty(t, tmp)
		})
	}
	if _, err := New(Config{Binary: "/nonexistent/prusa-slicer"}); err != nil {
		t.Fatal(err)
	}
	s := newSlicer(t, Config{Binary: "/nonexistent/prusa-slicer"})
	if _, err := s.Estimate(context.Background(), box, pla); !errors.Is(err, ErrFailed) {
		t.Fatalf("missing binary: err = %v, want ErrFailed", err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{Timeout: -time.Second},
		{TailBytes: 10},
		{Profile: []byte("max_print_height = tall\n")},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted it", cfg)
		}
	}
}

// alive reports whether pid runs (a zombie does not count).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(after, "Z")
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The timeout kills the whole process group: the slicer and a child it
// started.
func TestTimeoutKillsProcessGroup(t *testing.T) {
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Skip("no sleep binary")
	}
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	bin := fakeSlicer(t, "sleep 300 & echo $! > "+pidFile+".tmp; mv "+pidFile+".tmp "+pidFile+"; wait")
	tmp := t.TempDir()
	// The script waits for ever, so only the timeout ends it; it leaves a
	// loaded machine time to start the child and write its pid.
	s := newSlicer(t, Config{Binary: bin, TempDir: tmp, Timeout: 3 * time.Second})
	_, err := s.Estimate(context.Background(), box, pla)
	if !errors.Is(err, ErrTimeout) || errors.Is(err, pricing.ErrRejected) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	waitFor(t, "the child to die", func() bool { return !alive(pid) })
	assertEmpty(t, tmp)
}

// slicerProcs lists the prusa-slicer processes whose command line names
// dir.
func slicerProcs(dir string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(cmd, []byte("prusa-slicer")) && bytes.Contains(cmd, []byte(dir)) && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// A context cancelled mid-slice leaves no prusa-slicer running and no
// temporary file behind.
func TestCancelMidSlice(t *testing.T) {
	needPrusaSlicer(t)
	tmp := t.TempDir()
	s := newSlicer(t, Config{TempDir: tmp})
	m := &pricing.Model{Key: "sphere", Mesh: uvSphere(90, 400, 200)} // 160k triangles: seconds to slice
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Estimate(ctx, m, pla)
		done <- err
	}()
	// Wait until prusa-slicer has worked for 0.3 s of CPU time: it is
	// slicing, not starting.
	var busy bool
	deadline := time.Now().Add(30 * time.Second)
	for !busy && time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("the slice ended before it was cancelled: %v", err)
		default:
		}
		for _, pid := range slicerProcs(tmp) {
			busy = busy || cpuTicks(pid) >= 30
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !busy {
		t.Fatal("prusa-slicer never got busy")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Estimate did not return after the cancel")
	}
	if left := slicerProcs(tmp); len(left) > 0 {
		t.Fatalf("prusa-slicer still running: %v", left)
	}
	assertEmpty(t, tmp)
}

// cpuTicks is the CPU time pid used, in clock ticks (1/100 s on Linux).
func cpuTicks(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	_, after, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(after)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}

// uvSphere is a closed sphere of radius r mm, resting on z = 0.
func uvSphere(r float64, nu, nv int) *mesh.Mesh {
	m := &mesh.Mesh{}
	at := func(i, j int) uint32 { return uint32(1 + (i-1)*nu + j%nu) }
	m.Vertices = append(m.Vertices, [3]float32{0, 0, float32(2 * r)})
	for i := 1; i < nv; i++ {
		th := math.Pi * float64(i) / float64(nv)
		for j := range nu {
			ph := 2 * math.Pi * float64(j) / float64(nu)
			m.Vertices = append(m.Vertices, [3]float32{
				float32(r*math.Sin(th)*math.Cos(ph) + r + 10), float32(r*math.Sin(th)*math.Sin(ph) + r + 10), float32(r*math.Cos(th) + r)})
		}
	}
	south := uint32(len(m.Vertices))
	m.Vertices = append(m.Vertices, [3]float32{float32(r + 10), float32(r + 10), 0})
	m.Vertices[0] = [3]float32{float32(r + 10), float32(r + 10), float32(2 * r)}
	for j := range nu {
		m.Triangles = append(m.Triangles, [3]uint32{0, at(1, j), at(1, j+1)})
		m.Triangles = append(m.Triangles, [3]uint32{south, at(nv-1, j+1), at(nv-1, j)})
	}
	for i := 1; i < nv-1; i++ {
		for j := range nu {
			m.Triangles = append(m.Triangles, [3]uint32{at(i, j), at(i+1, j), at(i+1, j+1)}, [3]uint32{at(i, j), at(i+1, j+1), at(i, j+1)})
		}
	}
	return m
}
