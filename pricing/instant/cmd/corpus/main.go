// Command corpus rebuilds the corpus the instant estimator is fitted on:
// it renders every OpenSCAD source of the corpus directory to a binary
// STL (openscad, Debian package openscad), takes the shapes shipped with
// PrusaSlicer (Debian package prusa-slicer) as they are, measures each mesh with pricing/mesh, slices each with
// pricing/slicer and the default profile, and writes one CSV row per
// model: its geometry and PrusaSlicer's print time and filament.
//
//	go run ./pricing/instant/cmd/corpus            # everything, about 20 min on 2 cores
//	go run ./pricing/instant/cmd/corpus -resume    # only models missing from the CSV
//
// Models are sliced one at a time: one slice already uses every core.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ficuslabs/ficus/pricing/instant"
	"github.com/ficuslabs/ficus/pricing/instant/internal/scad"
	"github.com/ficuslabs/ficus/pricing/mesh"
	"github.com/ficuslabs/ficus/pricing/slicer"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "corpus:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		dir      = flag.String("dir", "pricing/instant/testdata/corpus", "directory of the OpenSCAD sources (*.scad)")
		stlDir   = flag.String("stl", "pricing/instant/testdata/corpus/stl", "directory the STLs are written to")
		shapes   = flag.String("shapes", "/usr/share/PrusaSlicer/shapes", "PrusaSlicer's shapes (*.stl), added as prusa_<name>; empty for none")
		out      = flag.String("csv", "pricing/instant/testdata/corpus.csv", "the CSV written")
		openscad = flag.String("openscad", "openscad", "OpenSCAD binary")
		timeout  = flag.Duration("timeout", 10*time.Minute, "per model: rendering, and slicing each")
		density  = flag.Float64("density", instant.CorpusDensity, "filament density, g/cm³")
		only     = flag.String("only", "", "regexp: only models whose name matches")
		resume   = flag.Bool("resume", false, "keep the CSV's rows and slice only the models it lacks")
		measure  = flag.Bool("remeasure", false, "only measure the CSV's models again from their STLs, keeping the slicer's figures")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	match, err := regexp.Compile(*only)
	if err != nil {
		return fmt.Errorf("-only: %w", err)
	}
	if err := os.MkdirAll(*stlDir, 0o755); err != nil {
		return err
	}
	sl, err := slicer.New(slicer.Config{Timeout: *timeout, Logger: log})
	if err != nil {
		return err
	}
	rows := map[string]instant.Sample{}
	if *resume || *measure {
		if f, err := os.Open(*out); err == nil {
			old, err := instant.ReadCorpus(f)
			f.Close()
			if err != nil {
				return err
			}
			for _, s := range old {
				rows[s.Name] = s
			}
		}
	}

	type job struct{ name, src string }
	var jobs []job
	scads, _ := filepath.Glob(filepath.Join(*dir, "*.scad"))
	for _, f := range scads {
		jobs = append(jobs, job{strings.TrimSuffix(filepath.Base(f), ".scad"), f})
	}
	if *shapes != "" {
		stls, _ := filepath.Glob(filepath.Join(*shapes, "*.stl"))
		for _, f := range stls {
			jobs = append(jobs, job{"prusa_" + strings.TrimSuffix(filepath.Base(f), ".stl"), f})
		}
	}
	if *measure {
		for _, j := range jobs {
			old, ok := rows[j.name]
			if !ok {
				continue
			}
			stl := j.src
			if strings.HasSuffix(j.src, ".scad") {
				stl = filepath.Join(*stlDir, j.name+".stl")
			}
			m, a, err := analyze(stl)
			if err != nil {
				return err
			}
			s := instant.SampleOf(j.name, m, a, old.Estimate())
			s.PrintSeconds, s.FilamentGrams, s.SliceSeconds = old.PrintSeconds, old.FilamentGrams, old.SliceSeconds
			rows[j.name] = s
		}
		return write(*out, rows)
	}
	ctx := context.Background()
	for _, j := range jobs {
		if !match.MatchString(j.name) {
			continue
		}
		if _, ok := rows[j.name]; ok {
			continue
		}
		stl := j.src // PrusaSlicer's shapes are used where the package put them
		start := time.Now()
		if strings.HasSuffix(j.src, ".scad") {
			stl = filepath.Join(*stlDir, j.name+".stl")
			err = scad.Render(ctx, *openscad, j.src, stl, *timeout)
		}
		if err != nil {
			log.Error("render", "model", j.name, "err", err)
			continue
		}
		rendered := time.Since(start)
		m, a, err := analyze(stl)
		if err != nil {
			log.Error("analyze", "model", j.name, "err", err)
			continue
		}
		start = time.Now()
		e, err := sl.SliceFile(ctx, stl, *density)
		took := time.Since(start)
		if err != nil {
			log.Error("slice", "model", j.name, "took", took, "err", err)
			continue
		}
		s := instant.SampleOf(j.name, m, a, e)
		s.SliceSeconds = took.Seconds()
		rows[j.name] = s
		log.Info("sliced", "model", j.name, "render", rendered.Round(time.Millisecond), "slice", took.Round(time.Millisecond),
			"print_time", e.PrintTime, "grams", e.FilamentGrams)
		if err := write(*out, rows); err != nil { // after each model, so an interrupted run keeps its work
			return err
		}
	}
	return write(*out, rows)
}

func write(name string, rows map[string]instant.Sample) error {
	keys := make([]string, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var samples []instant.Sample
	for _, k := range keys {
		samples = append(samples, rows[k])
	}
	var b bytes.Buffer
	if err := instant.WriteCorpus(&b, samples); err != nil {
		return err
	}
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

func analyze(stl string) (*mesh.Mesh, mesh.Analysis, error) {
	f, err := os.Open(stl)
	if err != nil {
		return nil, mesh.Analysis{}, err
	}
	defer f.Close()
	m, err := mesh.Parse(bufio.NewReader(f), stl, mesh.Limits{})
	if err != nil {
		return nil, mesh.Analysis{}, err
	}
	return m, mesh.Analyze(m), nil
}
