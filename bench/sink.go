package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// sinkMain is the RDB sink child (bench -sink HOST:PORT): a replica that asks for a full
// sync and throws the RDB away as it arrives. Its time is the source's part of any full
// sync through replication — fork, serialisation, transfer — with nothing loaded.
func sinkMain(addr string) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	start := time.Now()
	br := bufio.NewReaderSize(nc, 1<<20)
	line := func() ([]byte, error) {
		l, err := br.ReadSlice('\n')
		return bytes.TrimRight(l, "\r\n"), err
	}
	// One at a time: a source refuses PSYNC while a reply is still owed to the client.
	if _, err := io.WriteString(nc, "*3\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n"); err != nil {
		return err
	}
	if l, err := line(); err != nil || !bytes.Equal(l, []byte("+OK")) {
		return fmt.Errorf("REPLCONF capa eof: %q %v", l, err)
	}
	if _, err := io.WriteString(nc, "*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n"); err != nil {
		return err
	}
	if l, err := line(); err != nil || !bytes.HasPrefix(l, []byte("+FULLRESYNC")) {
		return fmt.Errorf("PSYNC: %q %v", l, err)
	}
	var hdr []byte
	for { // newlines are keepalives while the source forks
		if hdr, err = line(); err != nil {
			return err
		}
		if len(hdr) > 0 {
			break
		}
	}
	var n int64
	switch {
	case bytes.HasPrefix(hdr, []byte("$EOF:")) && len(hdr) == 5+40:
		mark := append([]byte(nil), hdr[5:]...)
		n, err = discardUntil(br, mark)
	case len(hdr) > 1 && hdr[0] == '$':
		size, perr := strconv.ParseInt(string(hdr[1:]), 10, 64)
		if perr != nil {
			return fmt.Errorf("RDB header %q", hdr)
		}
		n, err = io.CopyN(io.Discard, br, size)
	default:
		return fmt.Errorf("RDB header %q", hdr)
	}
	if err != nil {
		return err
	}
	fmt.Printf("%d %.6f\n", n, time.Since(start).Seconds())
	return nil
}

// discardUntil reads until the 40-byte end mark of a diskless transfer, which the
// source sends last (nothing follows it while the source takes no writes).
func discardUntil(br *bufio.Reader, mark []byte) (int64, error) {
	var n int64
	tail := make([]byte, 0, 2*len(mark)) // the last bytes read, to find a mark split across reads
	buf := make([]byte, 1<<20)
	for {
		k, err := br.Read(buf)
		if k > 0 {
			n += int64(k)
			tail = append(tail, buf[max(0, k-len(mark)):k]...) // within its capacity
			if over := len(tail) - len(mark); over > 0 {
				tail = tail[:copy(tail, tail[over:])]
			}
			if bytes.Equal(tail, mark) {
				return n - int64(len(mark)), nil
			}
		}
		if err != nil {
			return n, errors.Join(err, errors.New("RDB transfer ended before its end mark"))
		}
	}
}
