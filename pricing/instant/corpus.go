package instant

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/mesh"
)

// CorpusDensity is the filament density the corpus is sliced with, g/cm³
// (Prusament PLA).
const CorpusDensity = 1.24

// ErrCorpus: a corpus CSV is broken.
var ErrCorpus = errors.New("bad corpus")

// Sample is one model of the corpus: its geometry, and what PrusaSlicer
// estimated for it with the profile the coefficients are fitted for.
type Sample struct {
	// Name is the model's name, e.g. "box_20x20x20" or "prusa_bunny".
	Name string
	// Triangles, Volume (mm³), Area (mm²) and Size (bounding box, mm) are
	// mesh.Analyze's measures.
	Triangles int
	Volume    float64
	Area      float64
	Size      [3]float64
	// Surface is SurfaceOf the mesh.
	Surface Surface
	// PrintSeconds and FilamentGrams are PrusaSlicer's estimate, with a
	// filament of CorpusDensity.
	PrintSeconds  float64
	FilamentGrams float64
	// SliceSeconds is how long the slice took when the corpus was built
	// (wall time, informative only).
	SliceSeconds float64
}

// SampleOf makes a sample from a model's mesh, its analysis and the
// slicer's estimate for it.
func SampleOf(name string, m *mesh.Mesh, a mesh.Analysis, e pricing.Estimate) Sample {
	return Sample{
		Name: name, Triangles: a.Triangles, Volume: a.Volume, Area: a.Area, Size: a.Size(), Surface: SurfaceOf(m),
		PrintSeconds: e.PrintTime.Seconds(), FilamentGrams: e.FilamentGrams,
	}
}

// Analysis returns the sample's geometry as an analysis (bounding box
// from the origin).
func (s Sample) Analysis() mesh.Analysis {
	return mesh.Analysis{Triangles: s.Triangles, Volume: s.Volume, Area: s.Area, Max: s.Size}
}

// Estimate returns the slicer's estimate the sample records.
func (s Sample) Estimate() pricing.Estimate {
	return pricing.Estimate{
		PrintTime:     time.Duration(math.Round(s.PrintSeconds)) * time.Second,
		FilamentGrams: s.FilamentGrams,
	}
}

var corpusHeader = []string{
	"model", "triangles", "volume_mm3", "area_mm2", "size_x_mm", "size_y_mm", "size_z_mm", "flat_area_mm2", "wall_area_mm2",
	"print_seconds", "filament_grams", "slice_wall_seconds",
}

// WriteCorpus writes samples as CSV, one row per sample, with a header.
func WriteCorpus(w io.Writer, samples []Sample) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(corpusHeader); err != nil {
		return err
	}
	f := func(x float64, prec int) string { return strconv.FormatFloat(x, 'f', prec, 64) }
	for _, s := range samples {
		if err := cw.Write([]string{
			s.Name, strconv.Itoa(s.Triangles), f(s.Volume, 3), f(s.Area, 3),
			f(s.Size[0], 4), f(s.Size[1], 4), f(s.Size[2], 4), f(s.Surface.Flat, 3), f(s.Surface.Wall, 3),
			f(s.PrintSeconds, 0), f(s.FilamentGrams, 2), f(s.SliceSeconds, 1),
		}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// ReadCorpus reads a CSV written by WriteCorpus.
func ReadCorpus(r io.Reader) ([]Sample, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(corpusHeader)
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrCorpus, err)
	}
	for i, h := range corpusHeader {
		if head[i] != h {
			return nil, fmt.Errorf("%w: column %d is %q, want %q", ErrCorpus, i+1, head[i], h)
		}
	}
	var out []Sample
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorpus, err)
		}
		var nums [11]float64
		for i := range nums {
			nums[i], err = strconv.ParseFloat(rec[i+1], 64)
			if err != nil || math.IsNaN(nums[i]) || math.IsInf(nums[i], 0) || nums[i] < 0 {
				return nil, fmt.Errorf("%w: line %d: %s = %q", ErrCorpus, line, corpusHeader[i+1], rec[i+1])
			}
		}
		out = append(out, Sample{
			Name: rec[0], Triangles: int(nums[0]), Volume: nums[1], Area: nums[2],
			Size:         [3]float64{nums[3], nums[4], nums[5]},
			Surface:      Surface{Flat: nums[6], Wall: nums[7]},
			PrintSeconds: nums[8], FilamentGrams: nums[9], SliceSeconds: nums[10],
		})
	}
}
