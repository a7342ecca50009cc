package mesh

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The outside oracles: numpy-stl (Debian python3-stl), admesh and
// prusa-slicer --info, run on the real models. What they say and where
// they disagree with ficus is explained in docs/pricing-mesh.md; the
// table there comes from FICUS_MESH_ORACLE_TABLE=FILE go test -run
// TestOracles.

const numpyScript = `
import sys, warnings
warnings.simplefilter("ignore")
from stl import mesh
for line in sys.stdin:
    p = line.rstrip("\n")
    try:
        m = mesh.Mesh.from_file(p)
        v = m.get_mass_properties()[0]
        print(p, repr(float(v)), repr(float(m.areas.sum())), len(m.vectors), sep="\t", flush=True)
    except Exception as e:
        print(p, "ERR", str(e).replace("\n", " ").replace("\t", " "), sep="\t", flush=True)
`

type numpyResult struct {
	volume, area float64
	triangles    int
	err          string
}

// numpySTL runs numpy-stl on the files, in one process.
func numpySTL(t *testing.T, files []string) map[string]numpyResult {
	t.Helper()
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import stl").Run(); err != nil {
		skipOrFail(t, "numpy-stl is missing (Debian package python3-stl): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", numpyScript)
	cmd.Stdin = strings.NewReader(strings.Join(files, "\n") + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("numpy-stl: %v", err)
	}
	res := map[string]numpyResult{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		switch {
		case len(f) == 3 && f[1] == "ERR":
			res[f[0]] = numpyResult{err: f[2]}
		case len(f) == 4:
			v, _ := strconv.ParseFloat(f[1], 64)
			a, _ := strconv.ParseFloat(f[2], 64)
			n, _ := strconv.Atoi(f[3])
			res[f[0]] = numpyResult{volume: v, area: a, triangles: n}
		}
	}
	return res
}

type admeshResult struct {
	parts, disconnected, backwards, degenerate, facets int
	volume                                             float64
	err                                                string
}

var (
	admeshParts  = regexp.MustCompile(`Number of parts\s*:\s*(\d+)\s+Volume\s*:\s*(\S+)`)
	admeshDisc   = regexp.MustCompile(`Total disconnected facets\s*:\s*(\d+)`)
	admeshBack   = regexp.MustCompile(`Backwards edges\s*:\s*(\d+)`)
	admeshDegen  = regexp.MustCompile(`Degenerate facets\s*:\s*(\d+)`)
	admeshFacets = regexp.MustCompile(`Number of facets\s*:\s*(\d+)`)
)

// admesh runs admesh on an STL file, always under timeout: it spins
// forever on some inputs.
func admesh(file string) admeshResult {
	out, err := exec.Command("timeout", "20", "admesh", file).CombinedOutput()
	if err != nil {
		return admeshResult{err: fmt.Sprintf("admesh: %v", err)}
	}
	var r admeshResult
	s := string(out)
	m := admeshParts.FindStringSubmatch(s)
	if m == nil {
		return admeshResult{err: "admesh printed no results"}
	}
	r.parts, _ = strconv.Atoi(m[1])
	r.volume, _ = strconv.ParseFloat(m[2], 64)
	atoi := func(re *regexp.Regexp) int {
		if m := re.FindStringSubmatch(s); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
		return -1
	}
	r.disconnected, r.backwards, r.degenerate, r.facets = atoi(admeshDisc), atoi(admeshBack), atoi(admeshDegen), atoi(admeshFacets)
	return r
}

type prusaResult struct {
	manifold         bool
	openEdges, parts int
	facets           int
	volume           float64
	err              string
}

// prusaInfo runs prusa-slicer --info on the files, in batches; a file it
// cannot load makes it stop, so a batch that fails runs again one file at
// a time.
func prusaInfo(t *testing.T, files []string) map[string]prusaResult {
	t.Helper()
	if _, err := exec.LookPath("prusa-slicer"); err != nil {
		skipOrFail(t, "prusa-slicer is missing (Debian package prusa-slicer)")
	}
	res := map[string]prusaResult{}
	run := func(batch []string) bool {
		out, err := exec.Command("timeout", append([]string{"120", "prusa-slicer", "--info"}, batch...)...).Output()
		byName := map[string]*prusaResult{}
		var cur *prusaResult
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
				cur = &prusaResult{}
				byName[line[1:len(line)-1]] = cur
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok || cur == nil {
				continue
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			switch k {
			case "manifold":
				cur.manifold = v == "yes"
			case "open_edges":
				cur.openEdges, _ = strconv.Atoi(v)
			case "number_of_parts":
				cur.parts, _ = strconv.Atoi(v)
			case "number_of_facets":
				cur.facets, _ = strconv.Atoi(v)
			case "volume":
				cur.volume, _ = strconv.ParseFloat(v, 64)
			}
		}
		for _, f := range batch {
			if r := byName[filepath.Base(f)]; r != nil && err == nil {
				res[f] = *r
			}
		}
		return err == nil
	}
	const batchSize = 40
	for i := 0; i < len(files); i += batchSize {
		batch := files[i:min(i+batchSize, len(files))]
		if run(batch) {
			continue
		}
		for _, f := range batch {
			if !run([]string{f}) {
				res[f] = prusaResult{err: "prusa-slicer cannot load it"}
			}
		}
	}
	return res
}

type oracleRow struct {
	m          corpusModel
	np         *numpyResult
	ad         admeshResult
	pr         prusaResult
	admeshFile string
}

func rel(a, b float64) float64 {
	if a == b {
		return 0
	}
	return math.Abs(a-b) / max(math.Abs(a), math.Abs(b))
}

func TestOracles(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("admesh"); err != nil {
		skipOrFail(t, "admesh is missing (Debian package admesh)")
	}
	models := loadCorpus(t)
	var files, stls []string
	for _, c := range models {
		files = append(files, c.path)
		if strings.EqualFold(filepath.Ext(c.path), ".stl") {
			stls = append(stls, c.path)
		}
	}
	np := numpySTL(t, stls)
	pr := prusaInfo(t, files)
	rows := make([]oracleRow, len(models))
	tmp := t.TempDir()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i, c := range models {
		rows[i] = oracleRow{m: c, pr: pr[c.path]}
		if r, ok := np[c.path]; ok {
			rows[i].np = &r
		}
		// admesh reads only STL: OBJ and 3MF go to it as the binary STL
		// of the mesh ficus read, the same float32 positions.
		rows[i].admeshFile = c.path
		if !strings.EqualFold(filepath.Ext(c.path), ".stl") {
			rows[i].admeshFile = filepath.Join(tmp, fmt.Sprintf("%d.stl", i))
			if err := os.WriteFile(rows[i].admeshFile, binarySTL(c.mesh, "ficus"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			rows[i].ad = admesh(rows[i].admeshFile)
		}()
	}
	wg.Wait()
	for _, r := range rows {
		t.Log(r.line())
		r.check(t)
	}
	t.Log(summary(rows))
	if p := os.Getenv("FICUS_MESH_ORACLE_TABLE"); p != "" {
		var b bytes.Buffer
		b.WriteString("| file | triangles | ficus: closed, manifold (open/non-manifold/misoriented edges), shells | ficus volume mm³ | numpy-stl volume, area (rel. diff) | admesh: closed, parts, volume (rel. diff) | prusa-slicer: manifold, parts, volume (rel. diff) |\n|---|--:|---|--:|---|---|---|\n")
		for _, r := range rows {
			b.WriteString(r.markdown())
		}
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (r oracleRow) line() string {
	a := r.m.a
	s := fmt.Sprintf("%-40s %7d closed=%v manifold=%v open=%d nm=%d mis=%d shells=%d vol=%.6f area=%.6f",
		filepath.Base(r.m.path), a.Triangles, a.Closed, a.Manifold, a.OpenEdges, a.NonManifoldEdges, a.MisorientedEdges, a.Shells, a.Volume, a.Area)
	if r.np != nil {
		s += fmt.Sprintf(" | numpy vol %.3g area %.3g %s", rel(r.np.volume, a.Volume), rel(r.np.area, a.Area), r.np.err)
	}
	s += fmt.Sprintf(" | admesh disc=%d parts=%d back=%d vol %.3g %s", r.ad.disconnected, r.ad.parts, r.ad.backwards, rel(r.ad.volume, math.Abs(a.Volume)), r.ad.err)
	s += fmt.Sprintf(" | prusa manifold=%v open=%d parts=%d vol %.3g %s", r.pr.manifold, r.pr.openEdges, r.pr.parts, rel(r.pr.volume, a.Volume), r.pr.err)
	return s
}

func (r oracleRow) markdown() string {
	a := r.m.a
	yn := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	ficus := fmt.Sprintf("%s, %s (%d/%d/%d), %d", yn(a.Closed), yn(a.Manifold), a.OpenEdges, a.NonManifoldEdges, a.MisorientedEdges, a.Shells)
	npc := "n/a (not STL)"
	if r.np != nil {
		npc = fmt.Sprintf("%.3f, %.3f (%.1e, %.1e)", r.np.volume, r.np.area, rel(r.np.volume, a.Volume), rel(r.np.area, a.Area))
		if r.np.err != "" {
			npc = "error: " + r.np.err
		}
	}
	ad := fmt.Sprintf("%s, %d, %.6f (%.1e)", yn(r.ad.disconnected == 0), r.ad.parts, r.ad.volume, rel(r.ad.volume, math.Abs(a.Volume)))
	if r.ad.err != "" {
		ad = r.ad.err
	}
	pr := fmt.Sprintf("%s, %d, %.6f (%.1e)", yn(r.pr.manifold), r.pr.parts, r.pr.volume, rel(r.pr.volume, a.Volume))
	if r.pr.err != "" {
		pr = r.pr.err
	}
	return fmt.Sprintf("| %s | %d | %s | %.3f | %s | %s | %s |\n", filepath.Base(r.m.path), a.Triangles, ficus, a.Volume, npc, ad, pr)
}

// Tolerances of the outside tools, which sum in float32 (numpy-stl, and
// admesh and PrusaSlicer, which also print six decimals).
const (
	numpyTol = 1e-6
	toolTol  = 5e-5
)

// check holds r to the rules docs/pricing-mesh.md explains: where ficus
// and a tool may disagree, and why.
func (r oracleRow) check(t *testing.T) {
	t.Helper()
	a, name := r.m.a, filepath.Base(r.m.path)
	isSTL := strings.EqualFold(filepath.Ext(name), ".stl")
	// numpy-stl: the area of every STL; the volume of a manifold one
	// (on a misoriented mesh, its divergence-theorem formula is another
	// wrong number than the tetrahedra's).
	if isSTL {
		switch {
		case r.np == nil || r.np.err != "":
			t.Errorf("%s: numpy-stl did not read it: %+v", name, r.np)
		case r.np.triangles != a.Triangles:
			t.Errorf("%s: numpy-stl read %d triangles, ficus %d", name, r.np.triangles, a.Triangles)
		case rel(r.np.area, a.Area) > numpyTol:
			t.Errorf("%s: area %v, numpy-stl %v", name, a.Area, r.np.area)
		case a.Manifold && rel(r.np.volume, a.Volume) > numpyTol:
			t.Errorf("%s: volume %v, numpy-stl %v", name, a.Volume, r.np.volume)
		}
	}
	// admesh: joins facets on exactly equal vertices, like ficus, but
	// pairs up the four facets on an edge two parts share.
	if r.ad.err != "" {
		t.Errorf("%s: %s", name, r.ad.err)
		return
	}
	adClosed := r.ad.disconnected == 0
	if a.Closed && !adClosed {
		t.Errorf("%s: closed, admesh finds %d disconnected facets", name, r.ad.disconnected)
	}
	if adClosed && !a.Closed && a.NonManifoldEdges == 0 {
		t.Errorf("%s: open (%d open edges), admesh closed", name, a.OpenEdges)
	}
	if r.ad.facets != a.Triangles {
		t.Errorf("%s: admesh read %d facets, ficus %d triangles", name, r.ad.facets, a.Triangles)
	}
	if a.Manifold && rel(r.ad.volume, a.Volume) > toolTol {
		t.Errorf("%s: volume %v, admesh %v", name, a.Volume, r.ad.volume)
	}
	// prusa-slicer --info: welds an STL's vertices and stitches nearby
	// ones, but takes an OBJ's or 3MF's indices as they are.
	if r.pr.err != "" {
		if isSTL || !strings.Contains(r.pr.err, "cannot load") {
			t.Errorf("%s: %s", name, r.pr.err)
		}
		return
	}
	if isSTL && a.Manifold && !r.pr.manifold {
		t.Errorf("%s: manifold, prusa-slicer says not", name)
	}
	if r.pr.manifold && !a.Closed && a.NonManifoldEdges == 0 && a.OpenEdges > 0 && adClosed {
		t.Errorf("%s: open, prusa-slicer and admesh closed", name)
	}
	// Its OBJ reader drops the last face of a file without a final
	// newline and stops at a corner written "7/"; its 3MF reader leaves
	// out components: compare volumes only where it read every triangle.
	if a.Manifold && r.pr.manifold && r.pr.facets == a.Triangles && rel(r.pr.volume, a.Volume) > toolTol {
		t.Errorf("%s: volume %v, prusa-slicer %v", name, a.Volume, r.pr.volume)
	}
}

// summary counts what docs/pricing-mesh.md's table says.
func summary(rows []oracleRow) string {
	var (
		files, closed, manifold, stl, stlManifold, adAgree, prLoaded, prAgree int
		npArea, npVolManifold, adVol, prVol                                   float64
	)
	formats := map[string]int{}
	for _, r := range rows {
		a := r.m.a
		files++
		formats[strings.ToLower(filepath.Ext(r.m.path))]++
		if a.Closed {
			closed++
		}
		if a.Manifold {
			manifold++
		}
		if r.np != nil && r.np.err == "" {
			stl++
			npArea = max(npArea, rel(r.np.area, a.Area))
			if a.Manifold {
				stlManifold++
				npVolManifold = max(npVolManifold, rel(r.np.volume, a.Volume))
			}
		}
		if a.Closed == (r.ad.disconnected == 0) {
			adAgree++
		}
		if a.Manifold {
			adVol = max(adVol, rel(r.ad.volume, a.Volume))
		}
		if r.pr.err == "" {
			prLoaded++
			if a.Manifold == r.pr.manifold {
				prAgree++
			}
			if a.Manifold && r.pr.manifold && r.pr.facets == a.Triangles {
				prVol = max(prVol, rel(r.pr.volume, a.Volume))
			}
		}
	}
	return fmt.Sprintf("files %d %v; closed %d, manifold %d; numpy-stl: %d STL, area max %.2g, volume max %.2g on %d manifold; "+
		"admesh agrees on closedness %d, volume max %.2g on manifold; prusa-slicer loads %d, agrees on manifold %d, volume max %.2g",
		files, formats, closed, manifold, stl, npArea, npVolManifold, stlManifold, adAgree, adVol, prLoaded, prAgree, prVol)
}
