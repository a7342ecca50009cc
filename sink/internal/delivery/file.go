package delivery

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
)

// OpenAppend opens path for appending and reading, creating it with mode
// when missing (and syncing its directory so the new entry survives a
// crash). Bytes after the last newline come from a write that never
// completed and so was never acknowledged: they are cut, with a warning on
// log. It returns the file and its size after the cut.
func OpenAppend(path string, mode os.FileMode, log *slog.Logger) (*os.File, int64, error) {
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, mode)
	if err != nil {
		return nil, 0, err
	}
	size, err := cutTornTail(f, log)
	if err == nil && created {
		err = SyncDir(filepath.Dir(path))
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, size, nil
}

// cutTornTail truncates f after its last newline and returns the size left.
func cutTornTail(f *os.File, log *slog.Logger) (int64, error) {
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := info.Size()
	const step = 4096
	buf := make([]byte, step)
	end := size
	for end > 0 {
		start := max(end-step, 0)
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("read %s: %w", f.Name(), err)
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			end = start + int64(i) + 1
			break
		}
		end = start
	}
	if end == size {
		return size, nil
	}
	log.Warn("cutting a torn last line left by an interrupted write", "file", f.Name(), "bytes", size-end)
	if err := f.Truncate(end); err != nil {
		return 0, fmt.Errorf("truncate the torn last line of %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	return end, nil
}

// SyncDir makes a created or renamed directory entry durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
