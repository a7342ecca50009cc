package idempotency

import (
	"encoding/binary"
	"math/bits"
	"net/http"
)

// memArena holds the variable-length parts of a shard's records (keys,
// fingerprints, reasons, responses) in large chunks of bytes outside the
// Go heap (see offSlice), instead of an object per record. Space of
// deleted parts is reclaimed by compaction: once the chunks are more than
// three times the size of what records still refer to (and more than a
// few small chunks), the live parts are copied into a fresh chunk and the
// old ones are given back.
type memArena struct {
	chunks []offSlice[byte] // each holds its used bytes, up to its capacity
	size   int              // total capacity of the chunks
	live   int              // bytes records refer to
}

func (a *memArena) bytes(s span) []byte {
	if s.n == 0 {
		return nil
	}
	return a.chunks[s.chunk].s[s.off : s.off+s.n : s.off+s.n]
}

// newChunk adds a chunk of at least n bytes.
func (a *memArena) newChunk(n int) {
	var c offSlice[byte]
	c.grow(n)
	a.chunks = append(a.chunks, c)
	a.size += cap(c.s)
}

// free gives back every chunk and empties a.
func (a *memArena) free() {
	for i := range a.chunks {
		a.chunks[i].free()
	}
	*a = memArena{}
}

// alloc hands out n bytes; they must be written before sh.mu is released.
func (a *memArena) alloc(n int) (span, []byte) {
	if n == 0 {
		return span{}, nil
	}
	last := len(a.chunks) - 1
	if last < 0 || cap(a.chunks[last].s)-len(a.chunks[last].s) < n {
		a.newChunk(max(n, min(max(a.size/8, memMinChunk), memMaxChunk)))
		last++
	}
	c := a.chunks[last].s
	off := len(c)
	a.chunks[last].s = c[:off+n]
	a.live += n
	return span{chunk: uint32(last), off: uint32(off), n: uint32(n)}, c[off : off+n : off+n]
}

// putString stores the concatenation of parts.
func (sh *memShard) putString(parts ...string) span {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	s, b := sh.arena.alloc(n)
	for _, p := range parts {
		b = b[copy(b, p):]
	}
	return s
}

// freeSpan gives the bytes of *s back, clears it, and compacts the arena
// when much of it is no longer live. No byte slice of the arena may be held
// across it.
func (sh *memShard) freeSpan(s *span) {
	if s.n == 0 {
		return
	}
	sh.arena.live -= int(s.n)
	*s = span{}
	sh.compact()
}

// compact copies the live parts of the arena into one new chunk when they
// fill less than a third of it. Each compaction copies fewer bytes than
// were freed since the last one, so its cost per freed byte is constant.
func (sh *memShard) compact() {
	a := &sh.arena
	if a.size <= 4*memMinChunk || 3*a.live >= a.size {
		return
	}
	if a.live == 0 {
		a.free()
		return
	}
	old := *a
	*a = memArena{}
	a.newChunk(old.live)
	defer old.free()
	move := func(s *span) {
		if s.n > 0 {
			n, b := a.alloc(int(s.n))
			copy(b, old.bytes(*s))
			*s = n
		}
	}
	for _, e := range sh.heap.s {
		s := sh.slot(e.slot)
		move(&s.key)
		move(&s.fp)
		move(&s.reason)
		move(&s.resp)
	}
}

// putResponse stores resp encoded as: status (2 bytes), the number of
// header values (uvarint), each value as its name and value (each a
// uvarint length and the bytes), then the body.
func (sh *memShard) putResponse(resp Response) span {
	lines, n := 0, 2+len(resp.Body)
	for name, vals := range resp.Header {
		for _, v := range vals {
			lines++
			n += uvarintLen(len(name)) + len(name) + uvarintLen(len(v)) + len(v)
		}
	}
	n += uvarintLen(lines)
	s, b := sh.arena.alloc(n)
	binary.BigEndian.PutUint16(b, uint16(resp.Status))
	b = b[2:]
	b = b[binary.PutUvarint(b, uint64(lines)):]
	for name, vals := range resp.Header {
		for _, v := range vals {
			b = b[binary.PutUvarint(b, uint64(len(name))):]
			b = b[copy(b, name):]
			b = b[binary.PutUvarint(b, uint64(len(v))):]
			b = b[copy(b, v):]
		}
	}
	copy(b, resp.Body)
	return s
}

// decodeResponse decodes what putResponse stored, into new memory.
func decodeResponse(b []byte) *Response {
	resp := &Response{Status: int(binary.BigEndian.Uint16(b)), Header: http.Header{}}
	b = b[2:]
	lines, w := binary.Uvarint(b)
	b = b[w:]
	// One string holds every name and value; they are substrings of it.
	all := string(b)
	pos := 0
	field := func() string {
		n, w := binary.Uvarint(b[pos:])
		pos += w
		f := all[pos : pos+int(n)]
		pos += int(n)
		return f
	}
	for range lines {
		name := field()
		resp.Header[name] = append(resp.Header[name], field())
	}
	resp.Body = []byte(all[pos:])
	return resp
}

func uvarintLen(n int) int {
	return (bits.Len64(uint64(n)|1) + 6) / 7
}
