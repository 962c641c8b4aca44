package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ringfence/ringfence/bench/internal/benchenv"
	"github.com/ringfence/ringfence/internal/procfs"
)

type role int

const (
	victim role = iota
	neighbour
)

// guest is one guest of either side as the rounds use it: its console,
// its QEMU and its address on the shared bridge.
type guest struct {
	name string // the domain's name (ringfence) or the bare guest's label
	side string // "ringfence" or "bare"
	role role
	ip   string
	mac  string
	con  *benchenv.Console
	// memMiB is a bare guest's RAM (restarts keep it).
	memMiB int
	pid    int // its QEMU
	b      *bench
}

func (g *guest) String() string { return g.side + " " + g.name }

// sh runs a shell line in the guest and waits for it to finish.
func (g *guest) sh(line string, timeout time.Duration) error {
	g.b.seq++
	// The marker is an arithmetic expansion, so it is in the output only,
	// never in the echoed command line.
	return g.con.Do(fmt.Sprintf("%s; echo done-%d-$((6*7))", line, g.b.seq), fmt.Sprintf("done-%d-42", g.b.seq), timeout)
}

// probe runs the probe in the foreground and decodes its result.
func (g *guest) probe(args string, timeout time.Duration, out any) error {
	g.b.seq++
	id := g.b.seq
	off := g.con.Len()
	fmt.Fprintf(g.con.W, "/tmp/probe -id %d %s\n", id, args)
	tag := fmt.Sprintf("RFPROBE %d ", id)
	deadline := time.Now().Add(timeout)
	for {
		s := g.con.Output()
		if i := strings.Index(s[off:], "RFPROBE-ERROR"); i >= 0 {
			return fmt.Errorf("%s: probe %s: %s", g, args, firstLine(s[off+i:]))
		}
		if i := strings.Index(s[off:], tag); i >= 0 {
			rest := s[off+i+len(tag):]
			if j := strings.IndexByte(rest, '\n'); j >= 0 {
				return json.Unmarshal([]byte(strings.TrimSpace(rest[:j])), out)
			}
		}
		if !g.alive() {
			return fmt.Errorf("%s: its QEMU is gone (probe %s)", g, args)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: probe %s gave no result within %s; console tail:\n%s", g, args, timeout, s[max(0, len(s)-600):])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[:i])
	}
	return s
}

// spawn starts the probe in the background (the neighbour's workloads).
func (g *guest) spawn(args ...string) error {
	var line []string
	for _, a := range args {
		line = append(line, "/tmp/probe "+a+" >/dev/null 2>&1 &")
	}
	return g.sh(strings.Join(line, " ")+" true", 30*time.Second)
}

// calm ends every probe the guest runs.
func (g *guest) calm() error {
	return g.sh("killall -q probe; sleep 0.2", 60*time.Second)
}

// majflt is the QEMU's major page faults so far.
func (g *guest) majflt() uint64 {
	st, _ := procfs.ReadStat(g.pid, 0)
	return st.MajFlt
}

// rssMiB is the QEMU's resident memory.
func (g *guest) rssMiB() float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.pid))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			var kb float64
			fmt.Sscan(f[1], &kb)
			return kb / 1024
		}
	}
	return 0
}

// alive reports whether the guest's QEMU still runs.
func (g *guest) alive() bool { return procfs.Alive(g.pid, 0) }

// vcpuThread is the thread of the guest's vCPU 0.
func (g *guest) vcpuThread() int {
	for _, comm := range []string{"CPU 0/TCG", "CPU 0/KVM"} {
		if tid := procfs.ThreadNamed(g.pid, comm); tid > 0 {
			return tid
		}
	}
	return 0
}
