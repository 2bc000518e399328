package task

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
)

// copyChunk is how much the copier reads from the replica at a time.
const copyChunk = 1 << 20

// copyLowWater: a loader that has caught up with the copier waits until this much more
// is in the file (or the copy ends) before it is woken. The source sends its RDB in
// pieces of 16 KiB, and waking the loader for each costs two context switches — which on
// a virtual machine cost more than decoding the piece. Latency is no concern here: the
// snapshot is bulk data, and the copy's end always wakes the loader.
const copyLowWater = 256 << 10

// rdbCopy copies a snapshot from the replica to a file as fast as it arrives, while the
// loader reads the file behind it (reader). The file is named path+".part" until the RDB
// is complete, synced and renamed to path: a complete copy is what a restart may resume
// from.
type rdbCopy struct {
	path     string
	f        *os.File
	finished chan struct{} // closed when the copier returns

	mu      sync.Mutex
	size    int64         // bytes in the file
	done    bool          // the copier has stopped; err says why, nil when complete
	err     error         //
	want    int64         // the size the reader waits for (see copyLowWater)
	changed chan struct{} // closed (and replaced) when size reaches want, or done changes
}

func startCopy(src io.Reader, path string) (*rdbCopy, error) {
	f, err := os.OpenFile(path+".part", os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("copy the snapshot to the data directory: %w", err)
	}
	c := &rdbCopy{path: path, f: f, finished: make(chan struct{}), changed: make(chan struct{})}
	go c.run(src)
	return c, nil
}

func (c *rdbCopy) run(src io.Reader) {
	defer close(c.finished)
	buf := make([]byte, copyChunk)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := c.f.Write(buf[:n]); werr != nil {
				c.update(0, true, fmt.Errorf("copy the snapshot to %s: %w (is the data directory's disk full?)", c.f.Name(), werr))
				return
			}
			c.update(int64(n), false, nil)
		}
		switch {
		case err == io.EOF:
			if err := c.f.Sync(); err != nil {
				c.update(0, true, fmt.Errorf("copy the snapshot to %s: %w", c.f.Name(), err))
				return
			}
			if err := os.Rename(c.f.Name(), c.path); err != nil {
				c.update(0, true, fmt.Errorf("copy the snapshot: %w", err))
				return
			}
			c.update(0, true, nil)
			return
		case err != nil:
			c.update(0, true, err)
			return
		}
	}
}

func (c *rdbCopy) update(n int64, done bool, err error) {
	c.mu.Lock()
	c.size += n
	c.done, c.err = done, err
	if done || c.size >= c.want {
		close(c.changed)
		c.changed = make(chan struct{})
	}
	c.mu.Unlock()
}

// reader reads the copy from its start, waiting for the copier when it catches up with it,
// until the RDB's end (io.EOF), the copier's failure, or ctx's end.
func (c *rdbCopy) reader(ctx context.Context) io.Reader { return &copyReader{c: c, ctx: ctx} }

type copyReader struct {
	c   *rdbCopy
	ctx context.Context
	off int64
}

func (r *copyReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c := r.c
	for {
		c.mu.Lock()
		size, done, err, changed := c.size, c.done, c.err, c.changed
		// Read once a buffer's worth (up to copyLowWater) is there, or whatever is left
		// of a finished copy; otherwise ask the copier to wake us at that size.
		want := r.off + min(int64(len(p)), copyLowWater)
		if !done && size < want {
			c.want = want
		}
		c.mu.Unlock()
		if r.off < size && (done || size >= want) {
			n, rerr := c.f.ReadAt(p[:min(int64(len(p)), size-r.off)], r.off)
			r.off += int64(n)
			if n > 0 {
				return n, nil
			}
			return 0, fmt.Errorf("read the snapshot copy %s: %w", c.f.Name(), rerr)
		}
		if done {
			if err != nil {
				return 0, err
			}
			return 0, io.EOF
		}
		select {
		case <-changed:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

// copyHolder lets a session close the copy after its replica: the copier reads from the
// replica, and only closing the replica stops a read that waits for the network.
type copyHolder struct{ c *rdbCopy }

// close waits for the copier and closes the file, deleting it if it is incomplete.
func (h *copyHolder) close() {
	if h.c == nil {
		return
	}
	<-h.c.finished
	h.c.f.Close()
	h.c.mu.Lock()
	complete := h.c.err == nil
	h.c.mu.Unlock()
	if !complete {
		os.Remove(h.c.f.Name())
	}
}
