// Package slicer estimates print time and filament with a real slicer:
// it runs PrusaSlicer's command line (Debian package prusa-slicer) on the
// model with a configured profile and reads the estimate PrusaSlicer
// writes at the end of the G-code.
//
// A slice is the slow, real work of pricing (seconds for a small part,
// many minutes for a large one). Each run gets its own temporary
// directory, removed afterwards, and its own process group, killed as a
// whole when the timeout passes or the context ends, so no slicer is left
// running behind a cancelled request.
package slicer

import (
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/mesh"
)

// Errors of the slicer, wrapped with what was wrong.
var (
	// ErrTimeout: the slice took longer than Config.Timeout.
	ErrTimeout = errors.New("slicer timed out")
	// ErrFailed: the slicer failed on a model it did not reject (a crash,
	// a missing binary, an unreadable output).
	ErrFailed = errors.New("slicer failed")
)

//go:embed profiles/mk3s-0.20mm-pla.ini
var defaultProfile []byte

// DefaultProfileName names the profile shipped with ficus.
const DefaultProfileName = "mk3s-0.20mm-pla"

// DefaultProfile returns the profile shipped with ficus: a Prusa i3
// MK3S-like printer, 0.4 mm nozzle, 0.20 mm layers, 15% gyroid infill,
// PLA (see profiles/mk3s-0.20mm-pla.ini).
func DefaultProfile() []byte { return bytes.Clone(defaultProfile) }

// DefaultTimeout bounds one slice: a complex model takes up to 30
// minutes in the MES today, so a slice gets 35 before it is killed.
const DefaultTimeout = 35 * time.Minute

// Config configures a Slicer.
type Config struct {
	// Binary is the PrusaSlicer executable, a path or a name looked up in
	// PATH. Defaults to "prusa-slicer".
	Binary string
	// Profile is a PrusaSlicer config file's content (.ini, as written by
	// PrusaSlicer's --save or "Export config"). Defaults to
	// DefaultProfile().
	Profile []byte
	// ProfileName labels the profile in logs. Defaults to
	// DefaultProfileName with the default profile, "custom" otherwise.
	ProfileName string
	// Timeout bounds one slice; the process group is killed when it
	// passes. Defaults to DefaultTimeout (35 minutes).
	Timeout time.Duration
	// TempDir is where each slice makes its own directory (model, G-code,
	// PrusaSlicer's data dir), removed when the slice ends. Defaults to
	// os.TempDir().
	TempDir string
	// TailBytes is how much of the G-code's end is read for the estimate.
	// Defaults to 256 KiB (the summary and the config block PrusaSlicer
	// writes after it take about 10 KiB with the default profile).
	TailBytes int64
	// StderrBytes is how much of the end of the slicer's output is kept
	// for error messages. Defaults to 2 KiB.
	StderrBytes int
	// Logger receives a line per slice. Defaults to slog.Default().
	Logger *slog.Logger
}

// Slicer is a pricing.Estimator that runs PrusaSlicer. It is safe for
// concurrent use; each slice uses every core, so the caller bounds how
// many run at once.
type Slicer struct {
	cfg       Config
	maxHeight float64 // the profile's max_print_height, 0 when unknown
}

var _ pricing.Estimator = (*Slicer)(nil)

// New returns a Slicer. It checks the configuration but does not run the
// binary (a missing binary shows on the first slice).
func New(cfg Config) (*Slicer, error) {
	cfg.Binary = cmp.Or(cfg.Binary, "prusa-slicer")
	if len(cfg.Profile) == 0 {
		cfg.Profile = DefaultProfile()
		cfg.ProfileName = cmp.Or(cfg.ProfileName, DefaultProfileName)
	}
	cfg.ProfileName = cmp.Or(cfg.ProfileName, "custom")
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	cfg.TempDir = cmp.Or(cfg.TempDir, os.TempDir())
	cfg.TailBytes = cmp.Or(cfg.TailBytes, 256<<10)
	cfg.StderrBytes = cmp.Or(cfg.StderrBytes, 2<<10)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	switch {
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("slicer: timeout %v is negative", cfg.Timeout)
	case cfg.TailBytes < 1024:
		return nil, fmt.Errorf("slicer: tail of %d bytes is too short for the summary", cfg.TailBytes)
	case cfg.StderrBytes < 0:
		return nil, fmt.Errorf("slicer: stderr tail %d is negative", cfg.StderrBytes)
	}
	h, err := profileFloat(cfg.Profile, "max_print_height")
	if err != nil {
		return nil, fmt.Errorf("slicer: profile %s: %w", cfg.ProfileName, err)
	}
	cfg.Logger = cfg.Logger.With("component", "slicer", "profile", cfg.ProfileName)
	return &Slicer{cfg: cfg, maxHeight: h}, nil
}

// Estimate slices m and returns PrusaSlicer's estimate of one piece in
// mat. An STL model, or any model without Data, is sliced from its Mesh;
// an OBJ or 3MF model's bytes are sliced as they are. A model the slicer refuses (unreadable, empty,
// too thin to have a layer, larger than the bed) is pricing.ErrRejected.
func (s *Slicer) Estimate(ctx context.Context, m *pricing.Model, mat pricing.Material) (pricing.Estimate, error) {
	if m == nil {
		return pricing.Estimate{}, fmt.Errorf("slice: no model: %w", pricing.ErrRejected)
	}
	if h := m.Analysis.Size()[2]; s.maxHeight > 0 && m.Analysis.Triangles > 0 && h > s.maxHeight {
		return pricing.Estimate{}, fmt.Errorf("slice %s: %.1f mm tall, the printer prints up to %.1f mm: %w",
			m.Key, h, s.maxHeight, pricing.ErrRejected)
	}
	ext := strings.ToLower(path.Ext(m.Key))
	data := m.Data
	switch {
	case m.Mesh != nil && len(m.Mesh.Triangles) > 0 && (ext == ".stl" || len(data) == 0):
		// An STL is re-encoded from the parsed mesh: the slicer sees the
		// mesh ficus measured, in a binary STL with real normals that
		// PrusaSlicer cannot mistake for ASCII (see EncodeSTL).
		ext, data = ".stl", EncodeSTL(m.Mesh)
	case len(data) > 0 && (ext == ".stl" || ext == ".obj" || ext == ".3mf"):
	default:
		return pricing.Estimate{}, fmt.Errorf("slice %s: no model data in a format the slicer reads: %w", m.Key, pricing.ErrRejected)
	}
	dir, err := os.MkdirTemp(s.cfg.TempDir, "ficus-slice-")
	if err != nil {
		return pricing.Estimate{}, fmt.Errorf("slice %s: %w", m.Key, err)
	}
	defer os.RemoveAll(dir)
	in := filepath.Join(dir, "model"+ext)
	if err := os.WriteFile(in, data, 0o600); err != nil {
		return pricing.Estimate{}, fmt.Errorf("slice %s: write model: %w", m.Key, err)
	}
	e, err := s.slice(ctx, dir, in, mat.Density)
	if err != nil {
		return pricing.Estimate{}, fmt.Errorf("slice %s: %w", m.Key, err)
	}
	return e, nil
}

// SliceFile slices the model file at name (.stl, .obj or .3mf) for a
// material of density g/cm³ and returns PrusaSlicer's estimate. Its
// errors are those of Estimate.
func (s *Slicer) SliceFile(ctx context.Context, name string, density float64) (pricing.Estimate, error) {
	dir, err := os.MkdirTemp(s.cfg.TempDir, "ficus-slice-")
	if err != nil {
		return pricing.Estimate{}, fmt.Errorf("slice %s: %w", name, err)
	}
	defer os.RemoveAll(dir)
	abs, err := filepath.Abs(name)
	if err != nil {
		return pricing.Estimate{}, fmt.Errorf("slice %s: %w", name, err)
	}
	e, err := s.slice(ctx, dir, abs, density)
	if err != nil {
		return pricing.Estimate{}, fmt.Errorf("slice %s: %w", name, err)
	}
	return e, nil
}

func (s *Slicer) slice(ctx context.Context, dir, in string, density float64) (pricing.Estimate, error) {
	if !(density > 0 && density < 100) { // also catches NaN
		return pricing.Estimate{}, fmt.Errorf("material density %v g/cm³ is not sane: %w", density, pricing.ErrRejected)
	}
	profile := filepath.Join(dir, "profile.ini")
	if err := os.WriteFile(profile, s.cfg.Profile, 0o600); err != nil {
		return pricing.Estimate{}, fmt.Errorf("write profile: %w", err)
	}
	out := filepath.Join(dir, "model.gcode")
	ctx, cancel := context.WithTimeoutCause(ctx, s.cfg.Timeout, ErrTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.cfg.Binary,
		"--loglevel", "1",
		"--datadir", filepath.Join(dir, "data"),
		"--load", profile,
		"--filament-density", strconv.FormatFloat(density, 'f', -1, 64),
		"--export-gcode", "--output", out,
		in)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	logs := &tailBuffer{max: s.cfg.StderrBytes}
	cmd.Stdout, cmd.Stderr = logs, logs
	inGroup(cmd)
	start := time.Now()
	err := cmd.Run()
	killGroup(cmd)
	took := time.Since(start)
	if err != nil {
		if cerr := context.Cause(ctx); cerr != nil {
			s.cfg.Logger.Warn("slice stopped", "took", took, "err", cerr)
			return pricing.Estimate{}, fmt.Errorf("run %s after %v: %w", s.cfg.Binary, took.Round(time.Millisecond), cerr)
		}
		tail := logs.String()
		if rejected(tail) {
			return pricing.Estimate{}, fmt.Errorf("the slicer refused the model: %s: %w", lastLines(tail, 3), pricing.ErrRejected)
		}
		s.cfg.Logger.Warn("slice failed", "took", took, "err", err)
		return pricing.Estimate{}, fmt.Errorf("%w: run %s: %v: %s", ErrFailed, s.cfg.Binary, err, lastLines(tail, 5))
	}
	tail, err := readTail(out, s.cfg.TailBytes)
	if err != nil {
		return pricing.Estimate{}, fmt.Errorf("%w: read g-code: %v", ErrFailed, err)
	}
	sum, err := ParseSummary(tail)
	if err != nil {
		return pricing.Estimate{}, fmt.Errorf("%w: %w", ErrFailed, err)
	}
	s.cfg.Logger.Debug("sliced", "took", took, "print_time", sum.PrintTime, "grams", sum.FilamentGrams)
	return pricing.Estimate{PrintTime: sum.PrintTime, FilamentGrams: sum.FilamentGrams}, nil
}

// rejectMarks are what PrusaSlicer 2.5 prints when the model, not the
// slicer, is at fault.
var rejectMarks = []string{
	"Loading of a model file failed",
	"could not fit on the bed",
	"No layers were detected",
	"The input is an empty file",
	"Nothing to print",
	"No extrusions were generated",
	"the print is empty",
	"file is empty",
}

func rejected(logs string) bool {
	for _, m := range rejectMarks {
		if strings.Contains(logs, m) {
			return true
		}
	}
	return false
}

// lastLines returns the last n non-empty lines of s, without PrusaSlicer's
// timestamped trace lines, joined with " | ".
func lastLines(s string, n int) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.Contains(l, "[trace]") || strings.Contains(l, " => ") {
			continue
		}
		keep = append(keep, l)
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	if len(keep) == 0 {
		return "(no output)"
	}
	return strings.Join(keep, " | ")
}

func readTail(name string, n int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(st.Size()-n, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil || off == 0 {
		return b, err
	}
	// The tail begins in the middle of a line: drop that line.
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[i+1:], nil
	}
	return nil, nil
}

// profileFloat returns the value of key in an .ini profile, 0 when the
// profile does not set it.
func profileFloat(profile []byte, key string) (float64, error) {
	for _, l := range strings.Split(string(profile), "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok || strings.TrimSpace(k) != key {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || f < 0 || math.IsInf(f, 0) {
			return 0, fmt.Errorf("%s = %q is not a length", key, strings.TrimSpace(v))
		}
		return f, nil
	}
	return 0, nil
}

// EncodeSTL writes m as a binary STL, with each triangle's normal
// computed from its vertices.
//
// The normals matter: PrusaSlicer 2.5 (like admesh) takes an STL for
// ASCII when none of the 128 bytes after the header is above 127, which
// a binary STL with zero normals and small whole-number coordinates
// (a 10 mm cube) can satisfy; it then fails to load it. A unit normal
// always has a byte above 127.
func EncodeSTL(m *mesh.Mesh) []byte {
	b := make([]byte, 84, 84+50*len(m.Triangles))
	binary.LittleEndian.PutUint32(b[80:], uint32(len(m.Triangles)))
	var rec [50]byte
	for _, t := range m.Triangles {
		var p [3][3]float32
		for k := range 3 {
			if int(t[k]) < len(m.Vertices) {
				p[k] = m.Vertices[t[k]]
			}
		}
		n := normal(p)
		for j := range 3 {
			binary.LittleEndian.PutUint32(rec[4*j:], math.Float32bits(n[j]))
		}
		for k := range 3 {
			for j := range 3 {
				binary.LittleEndian.PutUint32(rec[12+12*k+4*j:], math.Float32bits(p[k][j]))
			}
		}
		b = append(b, rec[:]...)
	}
	return b
}

// normal is the unit normal of triangle p (counter-clockwise seen from
// outside), zero for a degenerate triangle.
func normal(p [3][3]float32) [3]float32 {
	var u, v [3]float64
	for j := range 3 {
		u[j] = float64(p[1][j]) - float64(p[0][j])
		v[j] = float64(p[2][j]) - float64(p[0][j])
	}
	c := [3]float64{u[1]*v[2] - u[2]*v[1], u[2]*v[0] - u[0]*v[2], u[0]*v[1] - u[1]*v[0]}
	l := math.Sqrt(c[0]*c[0] + c[1]*c[1] + c[2]*c[2])
	if l == 0 || math.IsNaN(l) || math.IsInf(l, 0) {
		return [3]float32{}
	}
	return [3]float32{float32(c[0] / l), float32(c[1] / l), float32(c[2] / l)}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > t.max {
		p = p[len(p)-t.max:]
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return n, nil
}

func (t *tailBuffer) String() string { return string(t.buf) }
