//go:build !amd64 || purego

package crc

// update is the table walk wherever there is no carry-less multiply path.
func update(crc uint64, p []byte) uint64 {
	return crc64Table(crc, p)
}

// crc64Impls names the implementations the tests compare against the bitwise
// reference; here there is only the table walk.
func crc64Impls() map[string]func(uint64, []byte) uint64 {
	return map[string]func(uint64, []byte) uint64{"table": crc64Table}
}
