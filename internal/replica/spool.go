package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

const (
	// maxSpoolChunk is the size of one in-memory spool chunk. Memory is accounted by
	// whole chunks, so SpoolMemory is rounded down to a multiple of it.
	maxSpoolChunk = 256 << 10
	// minSpoolChunk keeps chunks useful when SpoolMemory is tiny.
	minSpoolChunk = 4 << 10
	// spoolFileSize is the most one spill file holds before the next one is started;
	// files are deleted once consumed, so this bounds how much consumed data stays on
	// disk.
	spoolFileSize = 64 << 20
	// spoolFreeChunks is how many consumed chunks are kept for reuse.
	spoolFreeChunks = 4
)

// errSpoolClosed is what reads and writes see after close.
var errSpoolClosed = errors.New("replica closed")

// spool is a FIFO of bytes between the goroutine reading the socket and the parser: one
// writer, one reader. It holds up to memLimit bytes in memory and spills the rest to files
// in its own directory, deleted as the reader passes them, so the writer never waits for
// the reader. The source thus never sees a slow replica, and never grows its replica
// output buffer into client-output-buffer-limit.
//
// A boundary can be set once, at the end of the RDB: reads with rdbOnly stop there with
// io.EOF, and bytes written after it are the command stream.
type spool struct {
	parent   string // DataDir: where the spill directory is made, on first use
	memLimit int64
	chunk    int
	fileSize int64 // spoolFileSize; smaller in tests

	mu       sync.Mutex
	dir      string
	segs     []*segment // oldest first; segs[0] is being read
	memUsed  int64      // capacity of the chunks in segs
	written  int64      // bytes appended, ever
	consumed int64      // bytes read, ever
	boundary int64      // end of the RDB in written bytes; -1 until known
	err      error      // why no more bytes will come, once the writer stopped
	closed   bool
	free     [][]byte
	spilled  int64 // bytes written to files, ever
	files    int   // spill files created, ever
	diskUsed int64 // bytes in spill files not yet deleted

	ready    chan struct{} // a token after each write: wakes a waiting reader
	closedCh chan struct{}
}

// segment is one in-memory chunk or one spill file. Bytes [r, w) are readable. Only the
// writer appends (and raises w), only the reader advances r, both under spool.mu; the
// bytes below w never change, so they are copied outside the lock.
type segment struct {
	mem     []byte
	file    *os.File
	w, r    int64
	sealed  bool // the writer moved on: no more bytes will be appended
	writing bool // the writer is copying into it outside the lock
}

func newSpool(dataDir string, memLimit int64) *spool {
	chunk := int(min(max(memLimit/4, minSpoolChunk), maxSpoolChunk))
	return &spool{
		parent:   dataDir,
		memLimit: memLimit,
		chunk:    chunk,
		fileSize: spoolFileSize,
		boundary: -1,
		ready:    make(chan struct{}, 1),
		closedCh: make(chan struct{}),
	}
}

// write appends p. It fails only when the spool is closed or a spill file cannot be
// written.
func (s *spool) write(p []byte) error {
	for len(p) > 0 {
		seg, err := s.tail()
		if err != nil {
			return err
		}
		var n int
		if seg.mem != nil {
			n = copy(seg.mem[seg.w:], p)
		} else {
			room := s.fileSize - seg.w
			n, err = seg.file.Write(p[:min(int64(len(p)), room)])
			if err != nil {
				s.mu.Lock()
				seg.writing = false
				s.mu.Unlock()
				return fmt.Errorf("spill the replication stream to %s: %w (is the data directory's disk full?)", seg.file.Name(), err)
			}
		}
		s.mu.Lock()
		seg.writing = false
		seg.w += int64(n)
		s.written += int64(n)
		if seg.file != nil {
			s.spilled += int64(n)
			s.diskUsed += int64(n)
		}
		s.mu.Unlock()
		s.notify()
		p = p[n:]
	}
	return nil
}

// tail returns the segment to append to, starting a new one when needed.
func (s *spool) tail() (*segment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errSpoolClosed
	}
	memFree := s.memUsed+int64(s.chunk) <= s.memLimit
	if len(s.segs) > 0 {
		t := s.segs[len(s.segs)-1]
		switch {
		case t.sealed:
		case t.mem != nil && t.w < int64(len(t.mem)):
			t.writing = true
			return t, nil
		case t.file != nil && t.w < s.fileSize && !(memFree && t.r == t.w):
			// Keep spilling into this file until it is full, or until the reader has
			// caught up with it and memory is free again.
			t.writing = true
			return t, nil
		}
		t.sealed = true
	}
	seg := &segment{}
	if memFree {
		if n := len(s.free); n > 0 {
			seg.mem, s.free = s.free[n-1], s.free[:n-1]
		} else {
			seg.mem = make([]byte, s.chunk)
		}
		s.memUsed += int64(len(seg.mem))
	} else {
		f, err := s.createFile()
		if err != nil {
			return nil, err
		}
		seg.file = f
	}
	seg.writing = true
	s.segs = append(s.segs, seg)
	return seg, nil
}

func (s *spool) createFile() (*os.File, error) {
	if s.dir == "" {
		d, err := os.MkdirTemp(s.parent, spoolDirPattern)
		if err != nil {
			return nil, fmt.Errorf("create the spool directory in %s: %w (set a writable data directory)", s.parent, err)
		}
		s.dir = d
	}
	f, err := os.CreateTemp(s.dir, "stream-*.spool")
	if err != nil {
		return nil, fmt.Errorf("create a spool file in %s: %w", s.dir, err)
	}
	s.files++
	return f, nil
}

// setBoundaryAt marks the end of the RDB at spool position at, or at the current end of
// the spool when at is negative.
func (s *spool) setBoundaryAt(at int64) {
	s.mu.Lock()
	if at < 0 {
		at = s.written
	}
	s.boundary = at
	s.mu.Unlock()
	s.notify()
}

// atBoundary reports whether the reader has consumed everything before the boundary.
func (s *spool) atBoundary() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.boundary >= 0 && s.consumed >= s.boundary
}

// fail records why the writer stopped; the reader sees it after the bytes before it.
func (s *spool) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.notify()
}

func (s *spool) notify() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// read reads up to len(p) bytes, waiting for the writer if nothing is buffered. With
// rdbOnly it stops at the boundary with io.EOF. When the writer has failed, read returns
// its error once everything before it was read.
func (s *spool) read(ctx context.Context, p []byte, rdbOnly bool) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.mu.Lock()
	var seg *segment
	for {
		if s.closed {
			s.mu.Unlock()
			return 0, errSpoolClosed
		}
		s.dropConsumed()
		if rdbOnly && s.boundary >= 0 && s.consumed >= s.boundary {
			s.mu.Unlock()
			return 0, io.EOF
		}
		if len(s.segs) > 0 && s.segs[0].r < s.segs[0].w {
			seg = s.segs[0]
			break
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return 0, err
		}
		s.mu.Unlock()
		select {
		case <-s.ready:
		case <-s.closedCh:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		s.mu.Lock()
	}
	n := min(int64(len(p)), seg.w-seg.r)
	if rdbOnly && s.boundary >= 0 {
		n = min(n, s.boundary-s.consumed)
	}
	off := seg.r
	s.mu.Unlock()

	if seg.mem != nil {
		copy(p, seg.mem[off:off+n])
	} else if _, err := seg.file.ReadAt(p[:n], off); err != nil {
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return 0, errSpoolClosed
		}
		return 0, fmt.Errorf("read the spool file %s: %w", seg.file.Name(), err)
	}

	s.mu.Lock()
	seg.r += n
	s.consumed += n
	if !s.closed {
		s.dropConsumed() // at once: the reader may now stay away for long
	}
	s.mu.Unlock()
	return int(n), nil
}

// dropConsumed releases the leading segments that are sealed and fully read. A spill
// file the reader has caught up with is sealed and deleted even while it is the last
// segment (unless the writer is appending to it right now): an idle link must not keep
// up to a file's worth of consumed bytes on disk.
func (s *spool) dropConsumed() {
	for len(s.segs) > 0 {
		seg := s.segs[0]
		if seg.file != nil && !seg.writing && seg.r == seg.w {
			seg.sealed = true
		}
		if !seg.sealed || seg.r < seg.w {
			return
		}
		s.segs[0] = nil
		s.segs = s.segs[1:]
		s.release(seg)
	}
}

func (s *spool) release(seg *segment) {
	if seg.mem != nil {
		s.memUsed -= int64(len(seg.mem))
		if len(s.free) < spoolFreeChunks {
			s.free = append(s.free, seg.mem)
		}
		return
	}
	s.diskUsed -= seg.w
	name := seg.file.Name()
	seg.file.Close()
	os.Remove(name)
}

// close releases everything: memory, spill files and the spill directory. Reads and
// writes in progress or later fail with errSpoolClosed.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.closedCh)
	for _, seg := range s.segs {
		if seg.file != nil {
			seg.file.Close()
		}
	}
	s.segs, s.free = nil, nil
	s.memUsed, s.diskUsed = 0, 0
	if s.dir != "" {
		if err := os.RemoveAll(s.dir); err != nil {
			return fmt.Errorf("remove the spool directory %s: %w", s.dir, err)
		}
	}
	return nil
}

// unread is how many bytes are written and not yet read.
func (s *spool) unread() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written - s.consumed
}

// spoolDirPattern names the directories spools make in DataDir (os.MkdirTemp pattern).
const spoolDirPattern = "replica-spool-*"

// RemoveStaleSpools deletes the spool directories that replicas left in dataDir without
// closing (the process was killed), and returns how many there were. Call it before
// opening a replica on a data directory no other live replica uses.
func RemoveStaleSpools(dataDir string) (int, error) {
	dirs, err := filepath.Glob(filepath.Join(dataDir, spoolDirPattern))
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			return 0, fmt.Errorf("remove the stale spool %s: %w", d, err)
		}
	}
	return len(dirs), nil
}

// SpoolStats describes what the spool holds between the socket and the parser.
type SpoolStats struct {
	Buffered    int64 // bytes received and not yet parsed (memory and disk)
	Memory      int64 // bytes of memory chunks held
	Disk        int64 // bytes in spill files not yet deleted
	Spilled     int64 // bytes ever written to spill files
	SpillFiles  int   // spill files ever created
	SpoolDir    string
	RDBBoundary int64 // spool position of the end of the RDB; -1 until it is received
}

func (s *spool) stats() SpoolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SpoolStats{
		Buffered:    s.written - s.consumed,
		Memory:      s.memUsed,
		Disk:        s.diskUsed,
		Spilled:     s.spilled,
		SpillFiles:  s.files,
		SpoolDir:    s.dir,
		RDBBoundary: s.boundary,
	}
}
