package delivery

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenAppendCutsTornTail(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 10000) // a torn line longer than one read step
	tests := []struct{ name, content, want string }{
		{"empty", "", ""},
		{"whole lines", "a\nb\n", "a\nb\n"},
		{"torn short line", "a\nb\nhal", "a\nb\n"},
		{"torn long line", "a\n" + long, "a\n"},
		{"long lines, torn tail", long + "\n" + long + "\n" + long[:5000], long + "\n" + long + "\n"},
		{"no newline at all", long, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "f.jsonl")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			f, size, err := OpenAppend(path, 0o600, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString("next\n"); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(path)
			if string(got) != tt.want+"next\n" || size != int64(len(tt.want)) {
				t.Errorf("after OpenAppend and a write: %d bytes (size %d), want %q + next", len(got), size, tt.want[:min(len(tt.want), 20)])
			}
		})
	}
}

func TestOpenAppendCreates(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "new.jsonl")
	f, size, err := OpenAppend(path, 0o640, slog.New(slog.DiscardHandler))
	if err != nil || size != 0 {
		t.Fatalf("OpenAppend = %d, %v", size, err)
	}
	f.Close()
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o640 {
		t.Errorf("created file: %v, %v; want mode 0640", info, err)
	}
}
