//go:build unix

package slicer

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// inGroup starts cmd in a process group of its own, and makes cancelling
// its context kill the whole group, not only the slicer's own process.
func inGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	// Output pipes held open by a killed group's stragglers must not keep
	// Wait waiting.
	cmd.WaitDelay = 5 * time.Second
}

// killGroup kills whatever is left of cmd's process group once the slicer
// itself has exited.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
