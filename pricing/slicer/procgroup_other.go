//go:build !unix

package slicer

import "os/exec"

// inGroup: without Unix process groups, cancelling kills the slicer's own
// process only.
func inGroup(cmd *exec.Cmd) {}

func killGroup(cmd *exec.Cmd) {}
