package instant

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/ficuslabs/ficus/pricing/mesh"
)

//go:embed coefficients.json
var defaultCoefficients []byte

// ErrCoefficients: a set of coefficients is unusable.
var ErrCoefficients = errors.New("bad coefficients")

// Coefficients turn a model's features into an estimate. The first group
// describes the slicing profile they were fitted for (copied from it,
// not fitted); Time and Filament are fitted (see Fit) and mean nothing
// for another profile.
type Coefficients struct {
	// Profile names the slicing profile.
	Profile string `json:"profile"`
	// LayerHeight is the profile's layer height, mm.
	LayerHeight float64 `json:"layer_height_mm"`
	// ExtrusionWidth is the profile's perimeter extrusion width, mm.
	ExtrusionWidth float64 `json:"extrusion_width_mm"`
	// Shell is the thickness of the solid skin the profile prints around
	// a part: its perimeters, and its top and bottom layers, mm.
	Shell float64 `json:"shell_mm"`
	// InnerPerimeterWeight is the inner perimeters' time per mm³ relative
	// to the outer one's: external_perimeter_speed / perimeter_speed.
	InnerPerimeterWeight float64 `json:"inner_perimeter_weight"`
	// MinLayerSeconds is slowdown_below_layer_time: the printer slows down
	// on a layer that would take less.
	MinLayerSeconds float64 `json:"min_layer_seconds"`
	// MinPrintSpeed is min_print_speed, mm/s: the slowdown stops there,
	// so a small layer takes its volume over (speed × width × height).
	MinPrintSpeed float64 `json:"min_print_speed_mm_s"`
	// Sharpness is the exponent of the soft maximum between a layer's own
	// time and the slowdown's (see PrintSeconds): layers differ within a
	// model, so the total is smoother than a plain maximum. At least 1.
	Sharpness float64 `json:"sharpness"`

	// Time holds the fitted print-time coefficients.
	Time TimeCoefficients `json:"time"`
	// Filament holds the fitted filament coefficients.
	Filament FilamentCoefficients `json:"filament"`
	// Fit records what they were fitted on; informative only.
	Fit FitInfo `json:"fit"`
}

// TimeCoefficients are the fitted parts of the print-time model (see
// PrintSeconds).
type TimeCoefficients struct {
	// Base is fixed time per print (start G-code, skirt), s.
	Base float64 `json:"base_s"`
	// PerLayer is time per layer beyond its extrusion (layer change,
	// travel, retraction), s.
	PerLayer float64 `json:"per_layer_s"`
	// PerPerimeterMM3 is s per mm³ of outer perimeter; inner perimeters
	// take InnerPerimeterWeight times that.
	PerPerimeterMM3 float64 `json:"per_perimeter_mm3_s"`
	// PerSkinMM3 is s per mm³ of solid top and bottom skin.
	PerSkinMM3 float64 `json:"per_skin_mm3_s"`
	// PerInfillMM3 is s per mm³ of the part's interior (sparse infill).
	PerInfillMM3 float64 `json:"per_infill_mm3_s"`
}

// FilamentCoefficients: filament volume, mm³ = Base + PerShellMM3·(the
// perimeters' and skins' volume) + PerInfillMM3·(the interior volume).
type FilamentCoefficients struct {
	Base         float64 `json:"base_mm3"`
	PerShellMM3  float64 `json:"per_shell_mm3"`
	PerInfillMM3 float64 `json:"per_infill_mm3"`
}

// FitInfo says what a set of coefficients was fitted on.
type FitInfo struct {
	// Corpus names the corpus file.
	Corpus string `json:"corpus"`
	// Train is the number of models fitted on.
	Train int `json:"train"`
}

// DefaultCoefficients returns the coefficients shipped with ficus
// (coefficients.json), fitted for slicer.DefaultProfile.
func DefaultCoefficients() (Coefficients, error) {
	return ParseCoefficients(defaultCoefficients)
}

// ParseCoefficients reads coefficients as JSON and checks them.
func ParseCoefficients(b []byte) (Coefficients, error) {
	var c Coefficients
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Coefficients{}, fmt.Errorf("%w: %v", ErrCoefficients, err)
	}
	return c, c.Validate()
}

// Validate checks that every coefficient is a finite number, not
// negative, and that the profile's parameters are sane.
func (c Coefficients) Validate() error {
	if !(c.LayerHeight >= 0.01 && c.LayerHeight <= 2) {
		return fmt.Errorf("%w: layer height %v mm", ErrCoefficients, c.LayerHeight)
	}
	if !(c.ExtrusionWidth > 0 && c.ExtrusionWidth <= c.Shell && c.Shell <= 20) {
		return fmt.Errorf("%w: extrusion width %v mm, shell %v mm", ErrCoefficients, c.ExtrusionWidth, c.Shell)
	}
	if !(c.Sharpness >= 1 && c.Sharpness <= 100) {
		return fmt.Errorf("%w: sharpness %v, want 1 to 100", ErrCoefficients, c.Sharpness)
	}
	all := append(c.timeVector(), c.filamentVector()...)
	all = append(all, c.InnerPerimeterWeight, c.MinLayerSeconds, c.MinPrintSpeed)
	for _, x := range all {
		if !(x >= 0) || x > 1e6 {
			return fmt.Errorf("%w: %v is negative, huge or not a number", ErrCoefficients, x)
		}
	}
	return nil
}

func (c Coefficients) timeVector() []float64 {
	t := c.Time
	return []float64{t.Base, t.PerLayer, t.PerPerimeterMM3, t.PerSkinMM3, t.PerInfillMM3}
}

func (c *Coefficients) setTime(x []float64) {
	c.Time = TimeCoefficients{Base: x[0], PerLayer: x[1], PerPerimeterMM3: x[2], PerSkinMM3: x[3], PerInfillMM3: x[4]}
}

func (c Coefficients) filamentVector() []float64 {
	f := c.Filament
	return []float64{f.Base, f.PerShellMM3, f.PerInfillMM3}
}

// Features are what the estimate is computed from: the volume and the
// bounding box's height from mesh.Analysis, and the surface split by
// where it faces (Surface). They follow where an FDM slicer spends time and material:
// perimeters along the walls, solid skins at the top and bottom, sparse
// infill inside, and a cost per layer.
type Features struct {
	// Layers is the height over the layer height, rounded up.
	Layers float64
	// FlatArea is the surface's area projected on the xy plane: the top
	// and bottom skins (Surface.Flat).
	FlatArea float64
	// WallArea is the surface's area projected sideways: the walls
	// (Surface.Wall).
	WallArea float64
	// OuterPerimeterVolume estimates the outer perimeters: the wall area
	// times the extrusion width, at most the volume.
	OuterPerimeterVolume float64
	// InnerPerimeterVolume estimates the inner perimeters: the wall area
	// times the rest of the shell, at most what the outer perimeters
	// leave (a thin wall is all outer perimeter).
	InnerPerimeterVolume float64
	// SkinVolume estimates the solid top and bottom skins: the flat area
	// times the shell, at most what the perimeters leave.
	SkinVolume float64
	// InfillVolume is the rest of the volume, filled with sparse infill.
	InfillVolume float64
}

// Surface splits a model's surface by where it faces: Flat is its area
// projected on the xy plane (the top and bottom skins, sloped ones
// included), Wall its area projected sideways (the perimeters: the sum
// over the layers of the outline's length, times the layer height).
type Surface struct {
	Flat, Wall float64
}

// SurfaceOf measures m's surface in float64. It is one pass over the
// triangles.
func SurfaceOf(m *mesh.Mesh) Surface {
	var s Surface
	if m == nil {
		return s
	}
	for _, t := range m.Triangles {
		var p [3][3]float64
		for k := range 3 {
			if int(t[k]) >= len(m.Vertices) {
				continue
			}
			for j := range 3 {
				p[k][j] = float64(m.Vertices[t[k]][j])
			}
		}
		u := [3]float64{p[1][0] - p[0][0], p[1][1] - p[0][1], p[1][2] - p[0][2]}
		v := [3]float64{p[2][0] - p[0][0], p[2][1] - p[0][1], p[2][2] - p[0][2]}
		// The cross product's length is twice the area; its z the
		// projection on the xy plane, its xy the sideways one.
		cx, cy, cz := u[1]*v[2]-u[2]*v[1], u[2]*v[0]-u[0]*v[2], u[0]*v[1]-u[1]*v[0]
		s.Flat += math.Abs(cz) / 2
		s.Wall += math.Sqrt(cx*cx+cy*cy) / 2
	}
	if math.IsNaN(s.Flat) || math.IsNaN(s.Wall) {
		return Surface{}
	}
	return s
}

// FeaturesOf computes the features of a model for c's profile from its
// analysis and, when known, its surface (SurfaceOf; nil: estimated from
// the analysis, the flat area as twice the mean cross-section).
func (c Coefficients) FeaturesOf(a mesh.Analysis, s *Surface) Features {
	h := a.Size()[2]
	v := math.Abs(a.Volume) // a mesh turned inside out has a negative volume
	area := max(a.Area, 0)
	f := Features{Layers: max(math.Ceil(h/c.LayerHeight), 0)}
	switch {
	case s != nil:
		f.FlatArea, f.WallArea = max(s.Flat, 0), max(s.Wall, 0)
	case h > 0:
		f.FlatArea = min(2*v/h, area)
		f.WallArea = area - f.FlatArea
	}
	f.OuterPerimeterVolume = min(f.WallArea*c.ExtrusionWidth, v)
	f.InnerPerimeterVolume = min(f.WallArea*(c.Shell-c.ExtrusionWidth), v-f.OuterPerimeterVolume)
	f.SkinVolume = min(f.FlatArea*c.Shell, v-f.OuterPerimeterVolume-f.InnerPerimeterVolume)
	f.InfillVolume = max(v-f.OuterPerimeterVolume-f.InnerPerimeterVolume-f.SkinVolume, 0)
	return f
}

func (c Coefficients) filamentRow(f Features) []float64 {
	return []float64{1, f.OuterPerimeterVolume + f.InnerPerimeterVolume + f.SkinVolume, f.InfillVolume}
}

// linearTimeRow is the print-time model without the slowdown, as a row
// of a linear least-squares problem (the fit's starting point).
func (c Coefficients) linearTimeRow(f Features) []float64 {
	return []float64{1, f.Layers, f.OuterPerimeterVolume + c.InnerPerimeterWeight*f.InnerPerimeterVolume, f.SkinVolume, f.InfillVolume}
}

// FilamentMM3 is the estimated filament volume of a model with features
// f, mm³.
func (c Coefficients) FilamentMM3(f Features) float64 {
	return dot(c.filamentVector(), c.filamentRow(f))
}

// PrintSeconds is the estimated print time of a model with features f:
//
//	work  = (PerPerimeterMM3·(outer + InnerPerimeterWeight·inner) + PerSkinMM3·skin + PerInfillMM3·infill) / layers
//	slow  = min(MinLayerSeconds, filament / layers / (MinPrintSpeed·ExtrusionWidth·LayerHeight))
//	time  = Base + layers·(PerLayer + softmax(work, slow))
//
// where softmax(a, b) = (aᵖ + bᵖ)^(1/p) with p = Sharpness: a layer takes
// its own work or the slowdown's time, whichever is longer.
func (c Coefficients) PrintSeconds(f Features) float64 {
	if f.Layers <= 0 {
		return c.Time.Base
	}
	row := c.linearTimeRow(f)
	t := c.Time
	work := (t.PerPerimeterMM3*row[2] + t.PerSkinMM3*row[3] + t.PerInfillMM3*row[4]) / f.Layers
	slow := c.MinLayerSeconds
	if den := c.MinPrintSpeed * c.ExtrusionWidth * c.LayerHeight; den > 0 {
		slow = min(slow, c.FilamentMM3(f)/f.Layers/den)
	}
	return t.Base + f.Layers*(t.PerLayer+softmax(work, slow, c.Sharpness))
}

func softmax(a, b, p float64) float64 {
	m := max(a, b)
	if m <= 0 {
		return 0
	}
	return m * math.Pow(math.Pow(a/m, p)+math.Pow(b/m, p), 1/p)
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}
