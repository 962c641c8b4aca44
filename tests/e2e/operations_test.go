package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

var opIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// randomFile writes size bytes that do not compress (an export of them
// takes a while).
func randomFile(t *testing.T, path string, size int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 1<<20)
	for range size >> 20 {
		r.Read(buf)
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOperations: long verbs are operations, and their records outlive
// a restart of the daemon. An async export or save
// returns an id at once; `operation wait` gets the result, `operation
// list` shows it; a cancelled export ends cancelled with nothing left
// behind and the domain untouched; a forged id is a 404 that says
// nothing; cancelling a finished one is a 409; an export whose client
// hung up right after the 202 completes.
func TestOperations(t *testing.T) {
	e := NewEnv(t)
	data := filepath.Join(e.Dir, "data.raw")
	randomFile(t, data, 384<<20)
	e.Boot("opg", "disk = [ 'format=raw,vdev=xvda,access=rw,target="+data+"' ]")
	pid := e.Domain("opg").PID

	// An export cancelled in flight.
	archive := filepath.Join(e.Dir, "cancelled.rfx")
	id := strings.TrimSpace(e.MustRF("export", "opg", "-o", archive, "--async"))
	if !opIDRE.MatchString(id) {
		t.Fatalf("export --async printed %q, want an operation id", id)
	}
	e.MustRF("operation", "cancel", id[:12])
	r := e.RF("operation", "wait", id, "--json")
	var op api.Operation
	if err := json.Unmarshal([]byte(r.Stdout), &op); err != nil || op.Status != api.OpCancelled || r.Code == 0 {
		t.Fatalf("a cancelled export: %+v (exit %d, %s)\n%s", op, r.Code, r.Stderr, e.DaemonLog())
	}
	if _, err := os.Stat(archive); !os.IsNotExist(err) {
		t.Fatalf("a cancelled export left its archive: %v", err)
	}
	if ents, _ := filepath.Glob(filepath.Join(e.Dir, ".ringfence-export-*")); len(ents) != 0 {
		t.Fatalf("a cancelled export left scratch: %v", ents)
	}
	if d := e.Domain("opg"); d.PID != pid || d.PID == 0 {
		t.Fatalf("the domain after a cancelled export: %+v", d)
	}
	if r := e.RF("operation", "cancel", id); r.Code == 0 || !strings.Contains(r.Stderr, "already ended") {
		t.Fatalf("cancel of a finished operation: %+v", r)
	}
	forgedID(t, e)
	hangUpExport(t, e, filepath.Join(e.Dir, "hangup.rfx"))

	// An async save: the id at once, listed, waited for.
	file := filepath.Join(e.Dir, "opg.save")
	t0 := time.Now()
	id = strings.TrimSpace(e.MustRF("save", "--async", "opg", file))
	t.Logf("save --async returned in %v", time.Since(t0))
	if !opIDRE.MatchString(id) {
		t.Fatalf("save --async printed %q", id)
	}
	list := e.MustRF("operation", "list")
	for _, l := range strings.Split(strings.TrimSpace(list), "\n") {
		if len(l) > 80 {
			t.Errorf("operation list: a line over 80 columns: %q", l)
		}
	}
	if !strings.Contains(list, id[:12]) || !strings.Contains(list, "save") {
		t.Fatalf("operation list does not show the save:\n%s", list)
	}
	if err := json.Unmarshal([]byte(e.MustRF("operation", "wait", id, "--json")), &op); err != nil || op.Status != api.OpSuccess || op.Kind != "save" || op.Owner != "root" {
		t.Fatalf("operation wait: %+v %v", op, err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Size() == 0 || len(e.List()) != 0 {
		t.Fatalf("after the save: %v, %d domains", err, len(e.List()))
	}
	e.MustRF("restore", file)
	restartKeepsRecords(t, e, id)
}

// forgedID: an id nobody was given is a 404 that names nothing else.
func forgedID(t *testing.T, e *Env) {
	t.Helper()
	forged := fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
	for _, verb := range []string{"show", "wait", "cancel"} {
		if r := e.RF("operation", verb, forged); r.Code == 0 || !strings.Contains(r.Stderr, "no operation") {
			t.Errorf("operation %s of a forged id: %+v", verb, r)
		}
	}
	_, err := e.Client.Operation(context.Background(), forged)
	var re *api.RemoteError
	if !asRemote(err, &re) || re.Class != "not-found" || strings.Contains(re.Message, "opg") || strings.Contains(re.Message, "export") {
		t.Errorf("a forged id: %v", err)
	}
	if _, err := e.Client.Operation(context.Background(), "../domains/opg"); err == nil {
		t.Error("a malformed id was taken")
	}
}

func asRemote(err error, re **api.RemoteError) bool {
	r, ok := err.(*api.RemoteError)
	*re = r
	return ok
}

// hangUpExport starts an export on a raw connection, reads the 202 and
// hangs up: the operation completes all the same.
func hangUpExport(t *testing.T, e *Env, archive string) {
	t.Helper()
	conn, err := net.Dial("unix", e.Socket)
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"path":%q}`, archive)
	fmt.Fprintf(conn, "POST %s/domains/opg/export HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", api.Version, len(body), body)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	var op api.Operation
	json.NewDecoder(resp.Body).Decode(&op)
	conn.Close()
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Location") != api.Version+"/operations/"+op.ID || op.Status != api.OpRunning {
		t.Fatalf("export: %d %v %+v", resp.StatusCode, resp.Header, op)
	}
	for !op.Done() {
		if op, err = e.Client.WaitOperation(context.Background(), op.ID, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	var res api.ExportResult
	if err := json.Unmarshal(op.Result, &res); op.Status != api.OpSuccess || err != nil || res.Path != archive {
		t.Fatalf("the export whose client hung up: %+v", op)
	}
	if fi, err := os.Stat(archive); err != nil || fi.Size() != res.Bytes {
		t.Fatalf("its archive: %v", err)
	}
}

// TestOperationCancelMigration: `operation cancel` stops a migration in
// flight like `migrate --cancel`, and so does Ctrl-C to a `migrate`
// waiting on it: the operation ends cancelled, the guest keeps running
// here, the destination keeps nothing.
func TestOperationCancelMigration(t *testing.T) {
	port := 20000 + os.Getpid()%20000
	srcAddr, dstAddr := fmt.Sprintf("127.0.0.1:%d", port+5), fmt.Sprintf("127.0.0.2:%d", port+6)
	src := NewEnvWith(t, EnvOptions{ServeArgs: []string{"--listen", srcAddr, guestStorage()}})
	src.MustRF("host", "trust", "--peer-name", "src", "--name", "127.0.0.1")
	dst := NewEnvWith(t, EnvOptions{Netns: src.Netns, ServeArgs: []string{"--listen", dstAddr, guestStorage()}})
	dst.JoinTo(src, "dst", "127.0.0.2")
	c := src.Boot("mover", "")
	pid := src.Domain("mover").PID
	// A guest that dirties memory fast with a 1 ms downtime target keeps
	// the stream busy.
	c.Send("(while true; do dd if=/dev/urandom of=/dev/shm/dirty bs=1M count=32 2>/dev/null; done) & echo dirty-$((3*3))")
	c.WaitFor("dirty-9", 0, 10*time.Second)
	id := strings.TrimSpace(src.MustRF("migrate", "--async", "--max-downtime", "1", "mover", dstAddr))
	if !opIDRE.MatchString(id) {
		t.Fatalf("migrate --async printed %q", id)
	}
	src.Await("the migration to stream", 20*time.Second, func() bool {
		op, err := src.Client.Operation(context.Background(), id)
		return err == nil && op.Progress != nil && op.Progress.Migration != nil && op.Progress.Done > 10<<20
	})
	var op api.Operation
	if err := json.Unmarshal([]byte(src.MustRF("operation", "cancel", "-w", id, "--json")), &op); err != nil || op.Status != api.OpCancelled || op.Kind != "migrate" || op.Domain != "mover" {
		t.Fatalf("operation cancel -w: %+v %v", op, err)
	}
	dst.Await("the destination to clean up after the cancel", 40*time.Second, func() bool { return len(dst.List()) == 0 && len(dst.QEMUs()) == 0 })
	if d := src.Domain("mover"); d.PID != pid || d.PID == 0 {
		t.Fatalf("the source after the cancel: %+v", d)
	}
	off := len(c.Output())
	c.Send("echo alive-$((6*7))")
	c.WaitFor("alive-42", off, 10*time.Second)
	interruptMigration(t, src, dst, dstAddr, pid)
	off = len(c.Output())
	c.Send("echo alive-$((7*7))")
	c.WaitFor("alive-49", off, 10*time.Second)
}
