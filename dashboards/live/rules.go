package live

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// WriteRuleFiles copies the rule files of fsys that match pattern (for
// example dashboards.FS and "alerts/*.yml") into dir, each passed through
// transform when it is set (for example a func calling
// dashboards.ScaleRules(src, factor)), and returns the written paths in
// name order. vmalert then reads them with -rule=DIR/*.yml.
func WriteRuleFiles(dir string, fsys fs.FS, pattern string, transform func([]byte) ([]byte, error)) ([]string, error) {
	names, err := fs.Glob(fsys, pattern)
	if err != nil {
		return nil, fmt.Errorf("write rule files %q: %w", pattern, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("write rule files: %w: no file matches %q", ErrConfig, pattern)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("write rule files: %w", err)
	}
	seen := map[string]string{}
	var out []string
	for _, name := range names {
		base := path.Base(name)
		if prev, ok := seen[base]; ok {
			return nil, fmt.Errorf("write rule files: %w: %s and %s would both be %s", ErrConfig, prev, name, base)
		}
		seen[base] = name
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("write rule files: %w", err)
		}
		if transform != nil {
			if b, err = transform(b); err != nil {
				return nil, fmt.Errorf("write rule files: transform %s: %w", name, err)
			}
		}
		p := filepath.Join(dir, base)
		// Readable by vmalert's user in its image (65532).
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return nil, fmt.Errorf("write rule files: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}
