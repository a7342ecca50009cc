package harness

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// ErrNoFile means a container holds no file at the path asked for.
var ErrNoFile = errors.New("no such file in the container")

// ReadFile copies a file out of the container (running or stopped): a
// JSONL sink's output, for example. A missing file is ErrNoFile.
func (c *Container) ReadFile(t testing.TB, path string) ([]byte, error) {
	t.Helper()
	rc, err := c.ctr.CopyFileFromContainer(t.Context(), path)
	if err != nil {
		if strings.Contains(strings.ToLower(err.Error()), "no such file") || strings.Contains(err.Error(), "Could not find") {
			return nil, fmt.Errorf("%s:%s: %w", c.Name, path, ErrNoFile)
		}
		return nil, fmt.Errorf("copy %s from %s: %w", path, c.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read %s from %s: %w", path, c.Name, err)
	}
	return b, nil
}
