package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strings"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/mesh"
)

// Upload defaults.
const (
	// DefaultMaxModelBytes is APIConfig.MaxModelBytes's default, the
	// model store's own limit.
	DefaultMaxModelBytes = pricing.DefaultMaxModelBytes
	// DefaultMaxUploads is APIConfig.MaxUploads's default.
	DefaultMaxUploads = 4
)

// modelTypes maps the media types of POST /api/v1/models to the model
// formats pricing/mesh reads.
var modelTypes = map[string]string{
	"model/stl":                  ".stl",
	"model/x.stl-binary":         ".stl",
	"model/x.stl-ascii":          ".stl",
	"application/sla":            ".stl",
	"application/vnd.ms-pki.stl": ".stl",
	"model/obj":                  ".obj",
	"model/3mf":                  ".3mf",
	"application/vnd.ms-package.3dmanufacturing-3dmodel+xml": ".3mf",
}

// ModelFormat picks an uploaded model's format, as the extension
// pricing/mesh.Parse reads (".stl", ".obj" or ".3mf"), from its
// Content-Type (model/stl, model/obj, model/3mf and their older names)
// or, for a generic type (none, application/octet-stream), from the
// format query parameter (stl, obj or 3mf). A type and a format that
// disagree, or neither, is an error wrapping ErrInvalid.
func ModelFormat(contentType, format string) (string, error) {
	fromFormat := ""
	if format != "" {
		switch f := strings.ToLower(format); f {
		case "stl", "obj", "3mf":
			fromFormat = "." + f
		default:
			return "", fmt.Errorf("%w: format %q: want stl, obj or 3mf", ErrInvalid, truncateText(format, 40))
		}
	}
	fromType := ""
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return "", fmt.Errorf("%w: Content-Type %q: %v", ErrInvalid, truncateText(contentType, 80), err)
		}
		if ext, ok := modelTypes[mt]; ok {
			fromType = ext
		} else if mt != "application/octet-stream" {
			return "", fmt.Errorf("%w: Content-Type %q is not a model: send model/stl, model/obj or model/3mf, or application/octet-stream with ?format=stl|obj|3mf", ErrInvalid, truncateText(mt, 80))
		}
	}
	switch {
	case fromType != "" && fromFormat != "" && fromType != fromFormat:
		return "", fmt.Errorf("%w: Content-Type says %s but format says %s", ErrInvalid, fromType[1:], fromFormat[1:])
	case fromType != "":
		return fromType, nil
	case fromFormat != "":
		return fromFormat, nil
	}
	return "", fmt.Errorf("%w: the model's format is unknown: send Content-Type model/stl, model/obj or model/3mf, or ?format=stl|obj|3mf", ErrInvalid)
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ModelInfo is the body of a 201 answer to POST /api/v1/models: the key
// to send as a quote's model_url, and what the model measures.
type ModelInfo struct {
	// Key is the model's key in the model store, named after its content:
	// uploads/<128 bits of its SHA-256><extension>.
	Key string `json:"key"`
	// ModelURL is the key as a URL of the model store; either works as a
	// quote's model_url.
	ModelURL  string     `json:"model_url"`
	Format    string     `json:"format"`
	Bytes     int        `json:"bytes"`
	Triangles int        `json:"triangles"`
	VolumeCM3 float64    `json:"volume_cm3"`
	SizeMM    [3]float64 `json:"size_mm"`
	Closed    bool       `json:"closed"`
	Shells    int        `json:"shells"`
}

// uploadModel serves POST /api/v1/models: the body is the model file.
func (a *API) uploadModel(w http.ResponseWriter, r *http.Request) {
	select {
	case a.uploads <- struct{}{}:
		defer func() { <-a.uploads }()
	default:
		a.modelsAnswered("busy").Inc()
		w.Header().Set("Retry-After", "1")
		writeProblem(w, http.StatusServiceUnavailable, "uploads-busy", "Too many uploads", fmt.Sprintf("%d models are being uploaded; try again", cap(a.uploads)))
		return
	}
	ext, err := ModelFormat(r.Header.Get("Content-Type"), r.URL.Query().Get("format"))
	if err != nil {
		a.modelsAnswered("invalid").Inc()
		writeProblem(w, http.StatusUnsupportedMediaType, "model-format", "Unsupported model format", strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
		return
	}
	if r.ContentLength > a.cfg.MaxModelBytes {
		a.modelsAnswered("invalid").Inc()
		writeProblem(w, http.StatusRequestEntityTooLarge, "model-too-large", "Model too large", fmt.Sprintf("the model is %d bytes, more than the limit of %d", r.ContentLength, a.cfg.MaxModelBytes))
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.cfg.MaxModelBytes))
	if err != nil {
		a.modelsAnswered("invalid").Inc()
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeProblem(w, http.StatusRequestEntityTooLarge, "model-too-large", "Model too large", fmt.Sprintf("the model is larger than the limit of %d bytes", a.cfg.MaxModelBytes))
			return
		}
		writeProblem(w, http.StatusBadRequest, "model-unreadable", "Model body unreadable", "the request body could not be read: "+err.Error())
		return
	}
	if len(data) == 0 {
		a.modelsAnswered("invalid").Inc()
		writeProblem(w, http.StatusBadRequest, "model-empty", "Empty model", "the request body is empty; send the model file as the body")
		return
	}
	m, err := mesh.Parse(bytes.NewReader(data), "model"+ext, mesh.Limits{MaxBytes: a.cfg.MaxModelBytes, MaxTriangles: a.cfg.MaxTriangles})
	if err != nil {
		a.modelsAnswered("invalid").Inc()
		// A mesh over a limit (triangles, a 3MF's unpacked bytes) is
		// 422, not 413: the body itself was within the limit.
		kind, title := "model-malformed", "Model does not parse"
		if errors.Is(err, mesh.ErrTooLarge) {
			kind, title = "model-too-large", "Model too large"
		}
		writeProblem(w, http.StatusUnprocessableEntity, kind, title, fmt.Sprintf("the %s model could not be read: %v", ext[1:], err))
		return
	}
	an := mesh.Analyze(m)
	if an.Triangles == 0 {
		a.modelsAnswered("invalid").Inc()
		writeProblem(w, http.StatusUnprocessableEntity, "model-empty", "Model has no triangles", "the model has no triangles to print")
		return
	}
	sum := sha256.Sum256(data)
	key := "uploads/" + hex.EncodeToString(sum[:16]) + ext
	if err := a.cfg.Models.Put(r.Context(), key, data); err != nil {
		a.modelsAnswered("error").Inc()
		a.log.Error("storing an uploaded model failed", "err", err, "key", key)
		writeProblem(w, http.StatusServiceUnavailable, "model-store", "Model not stored", "the model could not be stored; try again")
		return
	}
	a.modelsAnswered("stored").Inc()
	a.modelBytes.Update(float64(len(data)))
	w.Header().Set("Content-Location", a.cfg.Models.URL(key))
	writeJSON(w, http.StatusCreated, ModelInfo{
		Key: key, ModelURL: a.cfg.Models.URL(key), Format: ext[1:], Bytes: len(data),
		Triangles: an.Triangles, VolumeCM3: roundTo(an.Volume/1000, 3), SizeMM: roundSize(an.Size()),
		Closed: an.Closed, Shells: an.Shells,
	})
}

func roundTo(f float64, places int) float64 {
	p := math.Pow10(places)
	return math.Round(f*p) / p
}

func roundSize(s [3]float64) [3]float64 {
	return [3]float64{roundTo(s[0], 3), roundTo(s[1], 3), roundTo(s[2], 3)}
}

// modelOutcomes are the values of the outcome label of
// ficus_pricing_api_models_total.
var modelOutcomes = []string{"stored", "invalid", "busy", "error"}

func (a *API) modelsAnswered(outcome string) interface{ Inc() } {
	return a.set.GetOrCreateCounter(fmt.Sprintf(`ficus_pricing_api_models_total{outcome=%q}`, outcome))
}

// checkModel loads, parses and analyses a quote's model, and checks the
// request against the price list, before its job is queued. An error
// wrapping pricing.ErrRejected is the client's.
func (a *API) checkModel(ctx context.Context, req pricing.Request) error {
	if a.cfg.Models == nil {
		return nil
	}
	m, err := a.cfg.Models.Load(ctx, req.ModelKey)
	if err != nil {
		return err
	}
	if m.Analysis.Triangles == 0 {
		return fmt.Errorf("%w: model %q has no triangles to print", pricing.ErrRejected, req.ModelKey)
	}
	if a.cfg.PriceList != nil {
		if err := a.cfg.PriceList.Check(req, m.Analysis); err != nil {
			return fmt.Errorf("model %q: %w", req.ModelKey, err)
		}
	}
	return nil
}

// problem is an RFC 9457 problem detail.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// problemBase prefixes the type URIs of the problems ficus defines.
const problemBase = "https://ficus.dev/problems/"

func writeProblem(w http.ResponseWriter, status int, kind, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(problem{Type: problemBase + kind, Title: title, Status: status, Detail: detail})
}
