//go:build !linux

package testutil

import "syscall"

// sysProcAttr: outside Linux there is no parent-death signal; test cleanups stop the servers.
func sysProcAttr() *syscall.SysProcAttr { return nil }
