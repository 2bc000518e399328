package task

import "syscall"

// childProcAttr makes a child process die with the test binary, so that a crashed test
// leaves no ferry running.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
