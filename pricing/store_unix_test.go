//go:build unix

package pricing_test

import (
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ficuslabs/ficus/pricing"
)

// A FIFO in a file:// store would block the read forever; it is refused
// before it is opened.
func TestStoreLoadRefusesAFIFO(t *testing.T) {
	t.Parallel()
	s, dir := fileStore(t, pricing.StoreConfig{})
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.stl"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(t.Context(), "fifo.stl"); !errors.Is(err, pricing.ErrRejected) || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Load(fifo.stl): %v, want ErrRejected", err)
	}
}
