package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

func fileSum(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

// TestPoolsAndThinClones: a pool, a template put in it, a thin clone a
// guest boots from and writes to while the template stays byte-identical,
// and the refusals that keep data safe.
func TestPoolsAndThinClones(t *testing.T) {
	e := NewEnv(t)
	dir := filepath.Join(e.Dir, "pools", "fast")
	e.MustRF("pool", "create", "fast", "--dir", dir)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("pool dir: %v %v", fi, err)
	}
	// Bad input: a pool inside another, names that would leave the pool.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"pool", "create", "inner", "--dir", filepath.Join(dir, "inner")}, "inside pool fast"},
		{[]string{"pool", "create", "outer", "--dir", filepath.Join(e.Dir, "pools")}, "contains pool fast"},
		{[]string{"pool", "create", "fast", "--dir", filepath.Join(e.Dir, "other")}, "already exists"},
		{[]string{"volume", "create", "fast", "../escape.img", "1G"}, "no '/' or '..'"},
		{[]string{"volume", "create", "fast", "a/b.img", "1G"}, "no '/' or '..'"},
		{[]string{"volume", "create", "fast", "x.img", "10Q"}, "size"},
		{[]string{"volume", "create", "nopool", "x.img", "1G"}, "no pool named"},
		{[]string{"volume", "create", "fast", "x.img", "--from", "missing.img"}, "has no volume missing.img"},
	} {
		if r := e.RF(c.args...); r.Code == 0 || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("%v: %+v, want %q", c.args, r, c.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("bad input left files in the pool: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(e.Dir, "other")); err == nil {
		t.Fatal("a refused pool create made its directory")
	}

	// A template is any image put in the pool's directory.
	tpl := filepath.Join(dir, "debian.img")
	mustRun(t, "cp", "--sparse=always", imgPaths.Disk, tpl)
	tplSum := fileSum(t, tpl)
	start := time.Now()
	e.MustRF("volume", "create", "fast", "web01.qcow2", "--from", "debian.img")
	t.Logf("thin clone of a %d MiB template: %v", fileSize(t, tpl)>>20, time.Since(start))
	var vols []api.Volume
	json.Unmarshal([]byte(e.MustRF("volume", "list", "fast", "--json")), &vols)
	if len(vols) != 2 || vols[1].Name != "web01.qcow2" || vols[1].Backing != tpl || vols[1].Format != "qcow2" {
		t.Fatalf("volumes: %+v", vols)
	}

	clone := filepath.Join(dir, "web01.qcow2")
	c := e.Boot("web01", "disk = [ 'format=qcow2,vdev=xvda,access=rw,target="+clone+"' ]")
	c.WaitFor("/dev/vda mounted on /mnt", 0, 10*time.Second)
	c.Send("dd if=/dev/urandom of=/mnt/new bs=1k count=1024 2>/dev/null; sync; echo wrote-$((40+2))")
	c.WaitFor("wrote-42", 0, 20*time.Second)
	if r := e.RF("volume", "delete", "fast", "web01.qcow2"); r.Code == 0 || !strings.Contains(r.Stderr, "attached to web01") {
		t.Fatalf("deleting an attached volume: %+v", r)
	}
	if r := e.RF("volume", "delete", "fast", "debian.img"); r.Code == 0 || !strings.Contains(r.Stderr, "template of web01.qcow2") {
		t.Fatalf("deleting a template with clones: %+v", r)
	}
	if r := e.RF("pool", "delete", "fast"); r.Code == 0 || !strings.Contains(r.Stderr, "still has volumes") {
		t.Fatalf("deleting a pool with volumes: %+v", r)
	}
	e.MustRF("destroy", "web01")
	if got := fileSum(t, tpl); got != tplSum {
		t.Fatal("the guest's writes reached the template")
	}
	json.Unmarshal([]byte(e.MustRF("volume", "list", "fast", "--json")), &vols)
	if vols[1].AllocatedB < 1<<20 {
		t.Fatalf("the clone holds %d bytes after a 1 MiB write", vols[1].AllocatedB)
	}
	e.MustRF("volume", "resize", "fast", "web01.qcow2", "64M")
	e.MustRF("volume", "delete", "fast", "web01.qcow2")
	e.MustRF("volume", "delete", "fast", "debian.img")
	e.MustRF("pool", "delete", "fast")
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("the empty pool directory stayed")
	}
	if out := e.MustRF("pool", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("pools left: %s", out)
	}
}

func fileSize(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
