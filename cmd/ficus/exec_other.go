//go:build !unix

package main

import (
	"errors"
	"runtime"
)

// execProcess reports that this system cannot replace a running process.
func execProcess(string, []string, []string) error {
	return errors.New("replacing the running process is not supported on " + runtime.GOOS)
}
