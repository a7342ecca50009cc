package pricing

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// stores, the embedded default
	_ "gocloud.dev/blob/memblob"  // mem:// stores, for tests and throwaway use
	"gocloud.dev/gcerrors"

	"github.com/ficuslabs/ficus/pricing/mesh"
)

// Store defaults.
const (
	// DefaultMaxModelBytes is StoreConfig.MaxBytes's default.
	DefaultMaxModelBytes = 64 << 20
	// DefaultMaxTriangles is StoreConfig.MaxTriangles's default.
	DefaultMaxTriangles = 2_000_000
	// maxKeyLen bounds a key.
	maxKeyLen = 512
)

// StoreConfig bounds what a Store loads.
type StoreConfig struct {
	// MaxBytes is the largest model file loaded or stored. Defaults to
	// 64 MiB.
	MaxBytes int64
	// MaxTriangles is the most triangles a model may have. Defaults to
	// 2,000,000.
	MaxTriangles int
}

// Store is the one blob store that holds the customers' model files.
// Keys are relative slash-separated paths whose segments use only
// letters, digits, '.', '_' and '-' and are neither "." nor "..".
type Store struct {
	bucket *blob.Bucket
	cfg    StoreConfig
	// scheme, host and prefix identify the store in a model URL:
	// scheme://host/prefix/key.
	scheme, host, prefix string
	// root is the directory of a file:// store, to refuse links that
	// lead out of it.
	root *os.Root
}

// OpenStore opens the store at a gocloud.dev/blob URL: file:///dir (the
// directory must exist, or add ?create_dir=1), mem://, or any scheme whose
// driver the program registered (cmd/ficus registers s3://bucket).
func OpenStore(ctx context.Context, storeURL string, cfg StoreConfig) (*Store, error) {
	cfg.MaxBytes = cmp.Or(cfg.MaxBytes, DefaultMaxModelBytes)
	cfg.MaxTriangles = cmp.Or(cfg.MaxTriangles, DefaultMaxTriangles)
	if cfg.MaxBytes < 0 || cfg.MaxTriangles < 0 {
		return nil, fmt.Errorf("open model store: negative limits %+v", cfg)
	}
	u, err := url.Parse(storeURL)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("open model store %q: want a URL such as file:///var/lib/ficus/models or s3://bucket", storeURL)
	}
	s := &Store{
		cfg:    cfg,
		scheme: strings.ToLower(u.Scheme),
		host:   strings.ToLower(u.Host),
		prefix: strings.Trim(u.Path, "/"),
	}
	if s.scheme == "file" {
		dir := filepath.FromSlash(u.Path)
		if u.Query().Get("create_dir") != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("open model store %q: %w", storeURL, err)
			}
		}
		if s.root, err = os.OpenRoot(dir); err != nil {
			return nil, fmt.Errorf("open model store %q: %w", storeURL, err)
		}
	}
	s.bucket, err = blob.OpenBucket(ctx, storeURL)
	if err != nil {
		if s.root != nil {
			s.root.Close()
		}
		return nil, fmt.Errorf("open model store %q: %w", storeURL, err)
	}
	return s, nil
}

// Close releases the store.
func (s *Store) Close() error {
	err := s.bucket.Close()
	if s.root != nil {
		err = errors.Join(err, s.root.Close())
	}
	return err
}

// URL returns the model URL that names key in this store, e.g.
// s3://models/parts/a.stl; Resolve turns it back into key.
func (s *Store) URL(key string) string {
	p := "/" + key
	if s.prefix != "" {
		p = "/" + s.prefix + p
	}
	return (&url.URL{Scheme: s.scheme, Host: s.host, Path: p}).String()
}

// Resolve turns a quote's model_url into a key of this store. A model
// URL is a bare key ("parts/a.stl") or a URL naming this store's own
// scheme, bucket and directory ("s3://models/parts/a.stl"). Any other
// scheme, bucket or directory, a query, a fragment, user information,
// percent-encoding, and a key that is empty, absolute, has empty, "." or
// ".." segments, a backslash, a NUL or other characters outside letters,
// digits, '.', '_', '-' and '/', is an error wrapping ErrRejected.
func (s *Store) Resolve(modelURL string) (string, error) {
	reject := func(why string) (string, error) {
		return "", fmt.Errorf("%w: model_url %q %s", ErrRejected, truncate(modelURL, 200), why)
	}
	if len(modelURL) > 2*maxKeyLen {
		return reject(fmt.Sprintf("is longer than %d bytes", 2*maxKeyLen))
	}
	if strings.ContainsAny(modelURL, "%\\\x00") {
		return reject("holds a '%', a backslash or a NUL")
	}
	scheme, rest, isURL := strings.Cut(modelURL, "://")
	if !isURL {
		if strings.Contains(modelURL, ":") {
			return reject("is neither a key nor a URL of the model store")
		}
		if err := validKey(modelURL); err != nil {
			return reject(err.Error())
		}
		return modelURL, nil
	}
	u, err := url.Parse(modelURL)
	if err != nil {
		return reject("is not a valid URL")
	}
	switch {
	case !strings.EqualFold(scheme, s.scheme):
		return reject(fmt.Sprintf("names scheme %q; models are read only from the store %s", scheme, s.URL("")))
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(rest, "#"):
		return reject("has user information, a query or a fragment")
	case !strings.EqualFold(u.Host, s.host):
		return reject(fmt.Sprintf("names bucket %q; models are read only from the store %s", u.Host, s.URL("")))
	}
	p, ok := strings.CutPrefix(u.Path, "/")
	if s.prefix != "" && ok {
		p, ok = strings.CutPrefix(p, s.prefix+"/")
	}
	if !ok {
		return reject(fmt.Sprintf("is outside the store %s", s.URL("")))
	}
	if err := validKey(p); err != nil {
		return reject(err.Error())
	}
	return p, nil
}

// validKey checks a key's syntax.
func validKey(key string) error {
	if key == "" {
		return errors.New("names no key")
	}
	if len(key) > maxKeyLen {
		return fmt.Errorf("has a key longer than %d bytes", maxKeyLen)
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return errors.New("has an empty path segment (leading, trailing or double '/')")
		case ".", "..":
			return errors.New("has a '.' or '..' segment")
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return fmt.Errorf("has the character %q; keys use letters, digits, '.', '_', '-' and '/'", c)
			}
		}
	}
	return nil
}

// Load reads, parses and analyses the model at key. A key that is
// invalid or absent, a file larger than the limits, a link out of a
// file:// store and a file the parser refuses are errors wrapping
// ErrRejected; a store that cannot be read is a plain error.
func (s *Store) Load(ctx context.Context, key string) (*Model, error) {
	if err := validKey(key); err != nil {
		return nil, fmt.Errorf("%w: model key %q %v", ErrRejected, truncate(key, 200), err)
	}
	if s.root != nil {
		// Before the driver opens it: a link out of the directory, or a
		// FIFO or device that would block or never end, is refused.
		fi, err := s.root.Stat(filepath.FromSlash(key))
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("%w: model %q is not in the model store", ErrRejected, key)
		case err != nil:
			return nil, fmt.Errorf("%w: model %q is a link out of the model store or unreadable: %v", ErrRejected, key, err)
		case !fi.Mode().IsRegular():
			return nil, fmt.Errorf("%w: model %q is not a regular file", ErrRejected, key)
		}
	}
	attrs, err := s.bucket.Attributes(ctx, key)
	if err != nil {
		return nil, s.readError(key, err)
	}
	if attrs.Size > s.cfg.MaxBytes {
		return nil, fmt.Errorf("%w: model %q is %d bytes, more than the limit of %d", ErrRejected, key, attrs.Size, s.cfg.MaxBytes)
	}
	var escaped error
	r, err := s.bucket.NewReader(ctx, key, &blob.ReaderOptions{BeforeRead: func(as func(any) bool) error {
		var f *os.File
		if s.root == nil || !as(&f) {
			return nil
		}
		escaped = s.checkInside(key, f)
		return escaped
	}})
	if escaped != nil {
		return nil, escaped
	}
	if err != nil {
		return nil, s.readError(key, err)
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, s.cfg.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read model %q: %w", key, err)
	}
	if int64(len(data)) > s.cfg.MaxBytes {
		return nil, fmt.Errorf("%w: model %q is larger than the limit of %d bytes", ErrRejected, key, s.cfg.MaxBytes)
	}
	m, err := mesh.Parse(bytes.NewReader(data), path.Base(key), mesh.Limits{MaxBytes: s.cfg.MaxBytes, MaxTriangles: s.cfg.MaxTriangles})
	if err != nil {
		return nil, fmt.Errorf("%w: model %q: %v", ErrRejected, key, err)
	}
	return &Model{Key: key, Data: data, Mesh: m, Analysis: mesh.Analyze(m)}, nil
}

// checkInside refuses a file of a file:// store that is not the regular
// file os.Root finds at key, i.e. one reached through a link out of the
// store's directory.
func (s *Store) checkInside(key string, f *os.File) error {
	outside := fmt.Errorf("%w: model %q is a link out of the model store", ErrRejected, key)
	in, err := s.root.Open(filepath.FromSlash(key))
	if err != nil {
		return outside
	}
	defer in.Close()
	a, errA := f.Stat()
	b, errB := in.Stat()
	if errA != nil || errB != nil || !a.Mode().IsRegular() || !os.SameFile(a, b) {
		return outside
	}
	return nil
}

func (s *Store) readError(key string, err error) error {
	if gcerrors.Code(err) == gcerrors.NotFound {
		return fmt.Errorf("%w: model %q is not in the model store", ErrRejected, key)
	}
	return fmt.Errorf("read model %q: %w", key, err)
}

// Put writes a model file at key, replacing what was there. Invalid keys
// and files larger than the limit are errors wrapping ErrRejected.
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	if err := validKey(key); err != nil {
		return fmt.Errorf("%w: model key %q %v", ErrRejected, truncate(key, 200), err)
	}
	if int64(len(data)) > s.cfg.MaxBytes {
		return fmt.Errorf("%w: model %q is %d bytes, more than the limit of %d", ErrRejected, key, len(data), s.cfg.MaxBytes)
	}
	if err := s.bucket.WriteAll(ctx, key, data, &blob.WriterOptions{ContentType: "application/octet-stream"}); err != nil {
		return fmt.Errorf("write model %q: %w", key, err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
