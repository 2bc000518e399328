//go:build linux

package crc

import (
	"syscall"
	"testing"
)

// TestCRC64NoReadOutside runs each implementation over inputs that start at
// the first byte of a page or end at its last byte, with inaccessible pages
// either side: a load before p or past its end (the folding path reads the
// last 16 bytes of p again for the tail) faults instead of passing unseen.
func TestCRC64NoReadOutside(t *testing.T) {
	page := syscall.Getpagesize()
	mem, err := syscall.Mmap(-1, 0, 3*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatalf("mmap 3 pages: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Munmap(mem); err != nil {
			t.Errorf("munmap: %v", err)
		}
	})
	for _, guard := range [][]byte{mem[:page], mem[2*page:]} {
		if err := syscall.Mprotect(guard, syscall.PROT_NONE); err != nil {
			t.Fatalf("mprotect guard page: %v", err)
		}
	}
	data := mem[page : 2*page : 2*page]
	copy(data, benchInput(page))
	for name, f := range crc64Impls() {
		for n := 0; n <= page; n++ {
			head, tail := data[:n], data[page-n:]
			if got, want := f(0, head), crc64Table(0, head); got != want {
				t.Fatalf("%s: first %d bytes of the page = %#016x, table walk %#016x", name, n, got, want)
			}
			if got, want := f(0, tail), crc64Table(0, tail); got != want {
				t.Fatalf("%s: last %d bytes of the page = %#016x, table walk %#016x", name, n, got, want)
			}
		}
	}
}
