package mesh

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// maxLine is the longest line a text format may have.
const maxLine = 64 << 10

// lineReader splits a text file into lines and a line into
// whitespace-separated fields, reusing its buffers.
type lineReader struct {
	br     *bufio.Reader
	line   int
	fields [][]byte
	long   []byte
}

// next returns the next line's fields (valid until the next call), or
// io.EOF after the last line.
func (l *lineReader) next() ([][]byte, error) {
	b, err := l.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		// A line longer than the buffer: gather it, up to maxLine.
		l.long = append(l.long[:0], b...)
		for errors.Is(err, bufio.ErrBufferFull) {
			b, err = l.br.ReadSlice('\n')
			l.long = append(l.long, b...)
			if len(l.long) > maxLine {
				return nil, fmt.Errorf("%w: line %d is longer than %d bytes", ErrMalformed, l.line+1, maxLine)
			}
		}
		b = l.long
	}
	if err != nil && err != io.EOF {
		return nil, err
	}
	if err == io.EOF && len(b) == 0 {
		return nil, io.EOF
	}
	l.line++
	if l.line == 1 && len(b) >= 3 && string(b[:3]) == "\xef\xbb\xbf" {
		b = b[3:]
	}
	l.fields = l.fields[:0]
	for i := 0; i < len(b); {
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		j := i
		for j < len(b) && !isSpace(b[j]) {
			j++
		}
		if j > i {
			l.fields = append(l.fields, b[i:j])
		}
		i = j
	}
	return l.fields, nil
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'
}

var errNotFinite = errors.New("not a finite number")

// parseFloat32 parses a decimal number to the nearest float32; NaN and
// infinities are an error.
func parseFloat32(b []byte) (float32, error) {
	f, err := strconv.ParseFloat(string(b), 32)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) {
			return 0, ne.Err
		}
		return 0, err
	}
	if !finite(float32(f)) {
		return 0, errNotFinite
	}
	return float32(f), nil
}
