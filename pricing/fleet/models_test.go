package fleet_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/fleet"
	"github.com/ficuslabs/ficus/pricing/instant"
)

// cubeSTL is a binary STL of a closed cube with edges of side mm.
func cubeSTL(side float32) []byte {
	v := [8][3]float32{}
	for i := range 8 {
		v[i] = [3]float32{float32(i&1) * side, float32(i>>1&1) * side, float32(i>>2&1) * side}
	}
	tris := [12][3]int{
		{0, 2, 1}, {1, 2, 3}, {4, 5, 6}, {5, 7, 6}, // bottom, top
		{0, 1, 4}, {1, 5, 4}, {2, 6, 3}, {3, 6, 7}, // front, back
		{0, 4, 2}, {2, 4, 6}, {1, 3, 5}, {3, 7, 5}, // left, right
	}
	var b bytes.Buffer
	b.Write(make([]byte, 80))
	binary.Write(&b, binary.LittleEndian, uint32(len(tris)))
	for _, t := range tris {
		binary.Write(&b, binary.LittleEndian, [3]float32{})
		for _, i := range t {
			binary.Write(&b, binary.LittleEndian, v[i])
		}
		b.Write([]byte{0, 0})
	}
	return b.Bytes()
}

// steadyConfig is fastConfig with a heartbeat that survives a busy
// machine: these tests are not about dead workers.
func steadyConfig(pool *pgxpool.Pool, lane fleet.Lane, c pricing.Calculator) fleet.WorkerConfig {
	cfg := fastConfig(pool, lane, c)
	cfg.HeartbeatInterval, cfg.HeartbeatTimeout = time.Second, time.Minute
	return cfg
}

type modelEnv struct {
	srv   *httptest.Server
	store *pricing.Store
	pool  *pgxpool.Pool
}

// newModelAPI serves the API with a model store and the price list, and a
// b2b worker pricing with the mesh calculator on that store.
func newModelAPI(t *testing.T, maxBytes int64) *modelEnv {
	t.Helper()
	db := newDB(t)
	q := startQueue(t, db.Pool)
	store, err := pricing.OpenStore(context.Background(), "file://"+t.TempDir(), pricing.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	est, err := instant.New(instant.Config{})
	if err != nil {
		t.Fatal(err)
	}
	pl := pricing.DefaultPriceList()
	calc, err := pricing.NewCalculator(pricing.CalculatorConfig{Name: "mesh", Store: store, PriceList: pl, Estimator: est})
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, steadyConfig(db.Pool, fleet.LaneB2B, calc))
	api, err := fleet.NewAPI(fleet.APIConfig{
		Queue: q, Models: store, PriceList: pl, Wait: time.Minute, Logger: quiet, MaxModelBytes: maxBytes,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &modelEnv{srv: srv, store: store, pool: db.Pool}
}

func (e *modelEnv) upload(t *testing.T, contentType, query string, body []byte) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("POST", e.srv.URL+"/api/v1/models"+query, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("upload: %d, body %q is not a JSON object", resp.StatusCode, raw)
	}
	return resp, out
}

func (e *modelEnv) quote(t *testing.T, modelURL string) (*http.Response, map[string]any) {
	t.Helper()
	body, _ := json.Marshal(fleet.QuoteRequest{ModelURL: modelURL, Material: "PLA", Quantity: 2})
	resp, err := http.Post(e.srv.URL+"/api/v1/quotes", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp, out
}

// An uploaded model is stored under a key named after its content and
// can be quoted by that key.
func TestUploadedModelIsQuoted(t *testing.T) {
	t.Parallel()
	e := newModelAPI(t, 0)
	cube := cubeSTL(20)
	resp, info := e.upload(t, "model/stl", "", cube)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d %v", resp.StatusCode, info)
	}
	key, _ := info["key"].(string)
	if !strings.HasPrefix(key, "uploads/") || !strings.HasSuffix(key, ".stl") {
		t.Fatalf("key %q; want uploads/<hash>.stl", key)
	}
	if info["triangles"] != 12.0 || info["volume_cm3"] != 8.0 || info["closed"] != true {
		t.Fatalf("upload answer %v; want 12 triangles, 8 cm³, closed", info)
	}
	if info["model_url"] != e.store.URL(key) {
		t.Fatalf("model_url %v; want %s", info["model_url"], e.store.URL(key))
	}
	// The same bytes again: the same key.
	if _, again := e.upload(t, "application/octet-stream", "?format=stl", cube); again["key"] != key {
		t.Fatalf("second upload's key %v; want %s", again["key"], key)
	}
	for _, u := range []string{key, e.store.URL(key)} {
		resp, q := e.quote(t, u)
		if resp.StatusCode != 200 || q["price"] == "" || q["currency"] != "EUR" {
			t.Fatalf("quote of %s: %d %v", u, resp.StatusCode, q)
		}
	}
}

func TestUploadRefusesBadModels(t *testing.T) {
	t.Parallel()
	e := newModelAPI(t, 4096)
	truncated := cubeSTL(20)[:300]
	huge := cubeSTL(20)
	huge = append(huge, make([]byte, 5000)...)
	nan := cubeSTL(20)
	binary.LittleEndian.PutUint32(nan[84+12:], math.Float32bits(float32(math.NaN())))
	claims := cubeSTL(20)
	binary.LittleEndian.PutUint32(claims[80:], 1000) // claims more triangles than it holds
	billions := cubeSTL(20)
	binary.LittleEndian.PutUint32(billions[80:], 1<<31) // claims two billion triangles
	for _, tc := range []struct {
		name, contentType, query string
		body                     []byte
		want                     int
	}{
		{"empty", "model/stl", "", nil, 400},
		{"no format", "", "", cubeSTL(20), 415},
		{"text/plain", "text/plain", "", cubeSTL(20), 415},
		{"unknown format", "application/octet-stream", "?format=step", cubeSTL(20), 415},
		{"type and format disagree", "model/3mf", "?format=stl", cubeSTL(20), 415},
		{"malformed Content-Type", "model/stl; =", "", cubeSTL(20), 415},
		{"truncated", "model/stl", "", truncated, 422},
		{"NaN vertex", "model/stl", "", nan, 422},
		{"count claims more than the file holds", "model/stl", "", claims, 422},
		{"count claims more than the limit", "model/stl", "", billions, 422},
		{"not a zip", "model/3mf", "", []byte("PK\x03\x04 not really"), 422},
		{"OBJ without faces", "model/obj", "", []byte("v 0 0 0\nv 1 0 0\n"), 422},
		{"larger than the limit", "model/stl", "", huge, 413},
	} {
		resp, p := e.upload(t, tc.contentType, tc.query, tc.body)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d %v; want %d", tc.name, resp.StatusCode, p, tc.want)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q; want application/problem+json", tc.name, ct)
		}
		if p["status"] != float64(tc.want) || p["detail"] == "" || !strings.HasPrefix(p["type"].(string), "https://ficus.dev/problems/") {
			t.Errorf("%s: problem %v", tc.name, p)
		}
	}
	if n := count(t, e.pool, "SELECT count(*) FROM ficus.pricing_quotes"); n != 0 {
		t.Fatalf("%d quotes; want none", n)
	}
}

// A quote whose model is missing, does not parse or is too large for the
// printer is refused at submit time: 422, and no job is queued.
func TestQuoteOfABadModelQueuesNoJob(t *testing.T) {
	t.Parallel()
	e := newModelAPI(t, 0)
	ctx := context.Background()
	if err := e.store.Put(ctx, "parts/broken.stl", []byte("solid x\nfacet normal 0 0 0\nouter loop\nvertex 1 2\n")); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Put(ctx, "parts/huge.stl", cubeSTL(5000)); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"parts/missing.stl", "parts/broken.stl", "parts/huge.stl"} {
		resp, body := e.quote(t, u)
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body["error"].(string), u[len("parts/"):]) {
			t.Errorf("quote of %s: %d %v; want 422 naming the model", u, resp.StatusCode, body)
		}
	}
	if n := count(t, e.pool, "SELECT count(*) FROM ficus.river_job"); n != 0 {
		t.Fatalf("%d jobs queued; want none", n)
	}
}

func TestModelFormat(t *testing.T) {
	for _, tc := range []struct{ ct, format, want string }{
		{"model/stl", "", ".stl"},
		{"MODEL/STL; charset=binary", "", ".stl"},
		{"application/sla", "", ".stl"},
		{"model/obj", "obj", ".obj"},
		{"model/3mf", "", ".3mf"},
		{"application/vnd.ms-package.3dmanufacturing-3dmodel+xml", "", ".3mf"},
		{"application/octet-stream", "3MF", ".3mf"},
		{"", "obj", ".obj"},
		{"", "", ""},
		{"application/octet-stream", "", ""},
		{"image/png", "stl", ""},
		{"model/stl", "obj", ""},
		{"", "../stl", ""},
	} {
		got, err := fleet.ModelFormat(tc.ct, tc.format)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("ModelFormat(%q, %q) = %q, %v; want %q", tc.ct, tc.format, got, err, tc.want)
		}
	}
}

func FuzzModelFormat(f *testing.F) {
	for _, s := range [][2]string{{"model/stl", ""}, {"application/octet-stream", "3mf"}, {"model/obj; x=\"", "obj"}, {"", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, ct, format string) {
		ext, err := fleet.ModelFormat(ct, format)
		if err == nil && ext != ".stl" && ext != ".obj" && ext != ".3mf" {
			t.Fatalf("ModelFormat(%q, %q) = %q", ct, format, ext)
		}
	})
}

// FuzzUploadModel posts arbitrary bodies and media types to the upload
// handler (on an in-memory store): every answer is 201 with a stored,
// loadable model, or a 4xx problem.
func FuzzUploadModel(f *testing.F) {
	cube := cubeSTL(10)
	f.Add("model/stl", "", cube)
	f.Add("model/stl", "", cube[:200])
	f.Add("model/obj", "", []byte("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"))
	f.Add("model/obj", "", []byte("v 0 0 0\nf 1 2 99999999\n"))
	f.Add("model/3mf", "", []byte("PK\x05\x06"+strings.Repeat("\x00", 18)))
	f.Add("", "stl", []byte("solid a\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 nan\nendloop\nendfacet\nendsolid\n"))
	ctx := context.Background()
	store, err := pricing.OpenStore(ctx, "mem://", pricing.StoreConfig{})
	if err != nil {
		f.Fatal(err)
	}
	// The queue is never used: the pool connects lazily, to nothing.
	pool, err := pgxpool.New(ctx, "postgres://127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		f.Fatal(err)
	}
	defer pool.Close()
	q, err := fleet.NewQueue(fleet.QueueConfig{Pool: pool, Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	api, err := fleet.NewAPI(fleet.APIConfig{Queue: q, Models: store, Logger: quiet, MaxModelBytes: 1 << 20, MaxTriangles: 10_000})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, ct, format string, body []byte) {
		target := "/api/v1/models"
		if format != "" {
			target += "?format=" + url.QueryEscape(format)
		}
		req := httptest.NewRequest("POST", target, bytes.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusCreated:
			var info fleet.ModelInfo
			if err := json.Unmarshal(rec.Body.Bytes(), &info); err != nil {
				t.Fatal(err)
			}
			if _, err := store.Load(ctx, info.Key); err != nil {
				t.Fatalf("stored model %s does not load: %v", info.Key, err)
			}
		case 400, 413, 415, 422:
			if rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d without a problem", rec.Code)
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})
}
