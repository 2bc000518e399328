package testutil

import "syscall"

// sysProcAttr makes the kernel kill redis-server when the test binary dies, even by SIGKILL or a
// timeout panic, so no server outlives its test run. (Pdeathsig follows the thread that started
// the child; Go only retires threads of goroutines that exit while locked to them, which the
// harness never does.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
