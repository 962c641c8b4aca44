package procfs

import (
	"os"
	"sync"
	"time"
)

// Counter files (a thread's schedstat, a cgroup's CPU time) are read for
// every domain at every sample: kept open and read with one pread each
// instead of an open, a read and a close (measured: bench/usage). A file
// whose object went (the thread ended, the cgroup was removed and maybe
// made again under the same name) fails its read, and is opened anew.
var counterFiles = struct {
	sync.Mutex
	open  map[string]*counterFile
	swept time.Time
}{open: map[string]*counterFile{}}

type counterFile struct {
	f    *os.File
	used time.Time
}

// counterIdle closes a counter file nobody read for this long.
const counterIdle = time.Minute

// ReadCounter reads a small counter file whole (at most 512 bytes).
func ReadCounter(path string) ([]byte, error) {
	buf := make([]byte, 512)
	for try := 0; try < 2; try++ {
		cf, err := counterOpen(path)
		if err != nil {
			return nil, err
		}
		n, err := cf.f.ReadAt(buf, 0)
		if n > 0 || err == nil {
			return buf[:n], nil
		}
		counterDrop(path, cf)
	}
	return nil, os.ErrNotExist
}

func counterOpen(path string) (*counterFile, error) {
	c := &counterFiles
	c.Lock()
	defer c.Unlock()
	now := time.Now()
	if now.Sub(c.swept) > counterIdle {
		for p, cf := range c.open {
			if now.Sub(cf.used) > counterIdle {
				cf.f.Close()
				delete(c.open, p)
			}
		}
		c.swept = now
	}
	if cf, ok := c.open[path]; ok {
		cf.used = now
		return cf, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	cf := &counterFile{f: f, used: now}
	c.open[path] = cf
	return cf, nil
}

func counterDrop(path string, cf *counterFile) {
	c := &counterFiles
	c.Lock()
	defer c.Unlock()
	if c.open[path] == cf {
		delete(c.open, path)
	}
	cf.f.Close()
}
