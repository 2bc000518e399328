package clustersource

import "syscall"

// childProcAttr makes a ferry process die with the test binary, so that a crashed test
// leaves none running.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
