//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package idempotency

import "syscall"

// mapMemory maps n zeroed bytes of anonymous memory, or returns nil.
func mapMemory(n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil
	}
	return b
}

// unmapMemory gives back what mapMemory returned.
func unmapMemory(b []byte) { syscall.Munmap(b) }
