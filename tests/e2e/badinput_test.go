package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/store"
)

// dumpStore stops the daemon, reads every key of its store and restarts it.
func (e *Env) dumpStore() map[string]string {
	e.t.Helper()
	e.StopDaemon()
	st, err := store.OpenBolt(filepath.Join(e.State, "state.db"))
	if err != nil {
		e.t.Fatal(err)
	}
	kvs, err := st.List(context.Background(), "")
	st.Close()
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range kvs {
		// History is meant to grow: the audit log records refused calls
		// too, a create that failed late is a failed operation's record,
		// and the event sequence moves on.
		// A running domain's usage record moves as it runs (its meter,
		// an hour's close): only the refused ones' must never appear.
		if strings.HasPrefix(kv.Key, "audit/") || kv.Key == "audit-seq" || strings.HasPrefix(kv.Key, "operations/") || kv.Key == "events-seq" ||
			kv.Key == "usage/open/dup" || strings.HasPrefix(kv.Key, "usage/rec/") && strings.Contains(kv.Key, "/dup/") {
			continue
		}
		out[kv.Key] = string(kv.Value)
	}
	e.StartDaemon()
	return out
}

func TestBadInputLeavesNothing(t *testing.T) {
	e := NewEnv(t)
	// A bridge for the case that fails late, after the tap exists.
	mustRun(t, "ip", "-n", e.Netns, "link", "add", "rfbr0", "type", "bridge")
	shared := filepath.Join(e.Dir, "shared.img")
	mustRun(t, "cp", "--sparse=always", imgPaths.Disk, shared)
	e.Boot("dup", "disk = [ 'file:"+shared+",xvda,w' ]")
	before := e.dumpStore()
	runDirs := func() []string {
		ents, _ := os.ReadDir(filepath.Join(e.Dir, "run", "domains"))
		var n []string
		for _, x := range ents {
			n = append(n, x.Name())
		}
		return n
	}
	dirsBefore := runDirs()

	rawCfg := func(name, body string) string {
		p := filepath.Join(e.Dir, name+".cfg")
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	cases := []struct {
		name string
		file string
		want []string // all must appear in stderr
	}{
		{"missing kernel", rawCfg("nokernel", "name = 'nok'\nkernel = '/nonexistent/vmlinuz'\nmemory = 64\n"),
			[]string{"kernel /nonexistent/vmlinuz", "no such file"}},
		{"duplicate name", e.WriteConfig("dup", ""),
			[]string{`"dup" already exists`}},
		{"memory beyond host", e.WriteConfig("huge", "memory = 4000000"),
			[]string{"memory:", "huge asks", "available"}},
		{"malformed file", rawCfg("bad", "name = 'bad'\nmemory = = 5\n"),
			[]string{"bad.cfg:2:10:", "expected a value"}},
		{"unquoted string", rawCfg("bad2", "name = web01\n"),
			[]string{"bad2.cfg:1:8:", "must be quoted"}},
		{"unknown bridge", e.WriteConfig("nobr", "vif = [ 'bridge=nosuchbr0' ]"),
			[]string{`bridge "nosuchbr0" does not exist`}},
		{"missing disk", e.WriteConfig("nodisk", "disk = [ 'file:/nonexistent/d.img,xvda,w' ]"),
			[]string{"disk xvda /nonexistent/d.img", "no such file"}},
		{"disk in use", e.WriteConfig("twin", "disk = [ 'file:"+shared+",xvda,r' ]"),
			[]string{"already in use by domain dup", "shared only read-only"}},
		{"placeholder mac", e.WriteConfig("mac", "vif = [ 'ip=192.168.1.10,mac=00:16:3E:XX:XX:XX,bridge=rfbr0' ]"),
			[]string{"mac \"00:16:3E:XX:XX:XX\" is malformed"}},
		{"malformed ip", e.WriteConfig("badip", "vif = [ 'bridge=rfbr0,ip=10.0.0.300' ]"),
			[]string{"badip.cfg:", `ip "10.0.0.300" is not an IPv4 or IPv6 address`}},
		{"malformed rate", e.WriteConfig("badrate", "vif = [ 'bridge=rfbr0,rate=fast' ]"),
			[]string{"badrate.cfg:", `rate "fast"`}},
		{"disk swapped fields", e.WriteConfig("swap", "disk = [ 'phy:xvda,/dev/loop0,w' ]"),
			[]string{"vdev goes second"}},
		// Fails inside QEMU, after the tap was made: the revert must undo it.
		{"qemu refuses disk", e.WriteConfig("late", "vif = [ 'bridge=rfbr0' ]\ndisk = [ 'format=qcow2,vdev=xvda,target="+imgPaths.Initrd+"' ]"),
			[]string{"qcow2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.RF("create", tc.file)
			if r.Code == 0 {
				t.Fatalf("create succeeded; stdout %s", r.Stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Stderr, w) {
					t.Errorf("error lacks %q:\n%s", w, r.Stderr)
				}
			}
			if n := strings.Count(strings.TrimSpace(r.Stderr), "\n"); n > 2 {
				t.Errorf("want one clear error, got %d lines:\n%s", n+1, r.Stderr)
			}
			if ds := e.List(); len(ds) != 1 || ds[0].Spec.Name != "dup" {
				t.Errorf("domains changed: %+v", ds)
			}
			if q := e.QEMUs(); len(q) != 1 {
				t.Errorf("QEMU processes: %v, want only dup's", q)
			}
			if strings.Contains(e.Links(), "vif") {
				t.Errorf("tap left:\n%s", e.Links())
			}
			if got := runDirs(); strings.Join(got, ",") != strings.Join(dirsBefore, ",") {
				t.Errorf("runtime dirs %v, want %v", got, dirsBefore)
			}
		})
	}
	after := e.dumpStore()
	if len(after) != len(before) {
		var added, gone []string
		for k := range after {
			if _, ok := before[k]; !ok {
				added = append(added, k)
			}
		}
		for k := range before {
			if _, ok := after[k]; !ok {
				gone = append(gone, k)
			}
		}
		t.Fatalf("store changed: %d keys -> %d; added %q, gone %q", len(before), len(after), added, gone)
	}
	for k, v := range before {
		if after[k] != v {
			t.Fatalf("store key %s changed", k)
		}
	}
}
