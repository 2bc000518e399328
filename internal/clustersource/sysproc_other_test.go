//go:build !linux

package clustersource

import "syscall"

// childProcAttr: without Pdeathsig, the tests' short --retry-timeout makes an orphan exit.
func childProcAttr() *syscall.SysProcAttr { return nil }
