//go:build unix

package main

import "syscall"

// execProcess replaces the running ficus with path; it returns only when
// that fails.
func execProcess(path string, argv, env []string) error {
	return syscall.Exec(path, argv, env)
}
