package e2e

import (
	"context"
	"encoding/json"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ringfence/ringfence/internal/api"
)

// TestObserve: GET /1.0 names the extensions; /1.0/metrics (the socket)
// and --metrics-listen (no token) serve Prometheus text that agrees with
// `top --json` and the ledger, per domain and per disk and vif; every mutating call, refused ones too,
// is in `ringfence audit`.
func TestObserve(t *testing.T) {
	e := NewEnv(t, "--metrics-listen", "127.0.0.1:9465")
	ctx := context.Background()
	info, err := e.Client.API(ctx)
	if err != nil || info.APIVersion != "1.0" || info.Release != api.Release ||
		!slices.Contains(info.Extensions, "audit") || !slices.Contains(info.Extensions, "metrics") {
		t.Fatalf("GET /1.0: %+v %v", info, err)
	}
	bootWithDevices(t, e, "ob1")

	// The socket's /1.0/metrics and the scraper's listener.
	text, err := e.Client.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var top api.Stats
	if err := json.Unmarshal([]byte(e.MustRF("top", "--json")), &top); err != nil {
		t.Fatal(err)
	}
	checkMetrics(t, parseMetrics(t, string(text)), top, e)
	scraped := mustRun(t, "nsenter", "--net=/run/netns/"+e.Netns, "curl", "-sf", "http://127.0.0.1:9465/metrics")
	checkMetrics(t, parseMetrics(t, scraped), top, e)
	// Only /metrics there: no token, so nothing else.
	if out, err := runOut("nsenter", "--net=/run/netns/"+e.Netns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:9465/1.0/domains"); err != nil || out != "404" {
		t.Errorf("GET /1.0/domains on the metrics listener: %q %v", out, err)
	}

	e.MustRF("pause", "ob1") // mutating calls, one refused: all recorded
	e.MustRF("unpause", "ob1")
	if r := e.RF("create", e.WriteConfig("ob1", "")); r.Code == 0 {
		t.Fatal("a second ob1 was created")
	}
	e.MustRF("top", "--json") // a read: not recorded
	var recs []api.AuditRecord
	if err := json.Unmarshal([]byte(e.MustRF("audit", "--json")), &recs); err != nil {
		t.Fatal(err)
	}
	// Each create is two records: the call (202, it started an
	// operation) and how its operation ended (the second one refused).
	want := []struct {
		method, path string
		status       int
		op           bool
	}{{"POST", "/1.0/domains", 202, false}, {"POST", "/1.0/domains", 200, true}, {"POST", "/1.0/domains/ob1/pause", 200, false},
		{"POST", "/1.0/domains/ob1/unpause", 200, false}, {"POST", "/1.0/domains", 202, false}, {"POST", "/1.0/domains", 409, true}}
	if len(recs) != len(want) {
		t.Fatalf("audit records: %+v", recs)
	}
	for i := range recs {
		if recs[i].Seq != uint64(i+1) {
			t.Fatalf("audit records out of sequence: %+v", recs)
		}
		// An operation that fails at once may end before its call's
		// record is written: the pair in either order.
		if i > 0 && recs[i-1].Operation != "" && recs[i].Operation == "" && recs[i].Path == recs[i-1].Path {
			recs[i-1], recs[i] = recs[i], recs[i-1]
			recs[i-1].Seq, recs[i].Seq = recs[i].Seq, recs[i-1].Seq
		}
	}
	for i, w := range want {
		r := recs[i]
		if r.Seq != uint64(i+1) || r.Principal != "root" || r.Kind != "local" || r.Role != "admin" || r.Remote != "unix" ||
			r.Method != w.method || r.Path != w.path || r.Status != w.status || (r.Class == "") != (w.status < 300) ||
			(r.Operation != "") != w.op || r.Time.IsZero() {
			t.Errorf("audit record %d: %+v, want %s %s %d (operation's end: %v)", i+1, r, w.method, w.path, w.status, w.op)
		}
	}
	if err := json.Unmarshal([]byte(e.MustRF("audit", "--since", "5", "--json")), &recs); err != nil || len(recs) != 1 || recs[0].Seq != 6 {
		t.Errorf("audit --since 5: %+v %v", recs, err)
	}
	table := e.MustRF("audit")
	for _, line := range strings.Split(strings.TrimSpace(table), "\n") {
		if len(line) > 80 {
			t.Errorf("audit line over 80 columns: %q", line)
		}
	}
	if !strings.Contains(table, "POST /domains/ob1/pause") || !strings.Contains(table, "root/admin") {
		t.Errorf("audit table:\n%s", table)
	}
}

// bootWithDevices boots name with a disk (xvdb) and a vif of its own,
// for the per-device series.
func bootWithDevices(t *testing.T, e *Env, name string) {
	t.Helper()
	mustRun(t, "ip", "-n", e.Netns, "link", "add", "obbr0", "type", "bridge")
	disk := filepath.Join(e.Dir, name+"-data.raw")
	if err := os.WriteFile(disk, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	e.Boot(name, "vif = [ 'bridge=obbr0' ]\ndisk = [ 'format=raw,vdev=xvdb,access=rw,target="+disk+"' ]")
}

func parseMetrics(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing the metrics: %v\n%s", err, text)
	}
	return fams
}

// value is a family's sample for domain ("": the unlabelled one).
func value(t *testing.T, fams map[string]*dto.MetricFamily, name, domain string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		var names []string
		for n := range fams {
			names = append(names, n)
		}
		t.Fatalf("no %s in the metrics (%d families: %v)", name, len(fams), names)
	}
	for _, m := range f.GetMetric() {
		var d string
		for _, l := range m.GetLabel() {
			if l.GetName() == "domain" {
				d = l.GetValue()
			}
		}
		if d != domain {
			continue
		}
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no %s{domain=%q} in the metrics", name, domain)
	return 0
}

// checkMetrics compares the metrics with top's figures (taken within a
// second or two: counters within a tolerance, memory exactly) and with
// the ledger.
func checkMetrics(t *testing.T, fams map[string]*dto.MetricFamily, top api.Stats, e *Env) {
	t.Helper()
	var d api.DomainStats
	for _, x := range top.Domains {
		if x.Name == "ob1" {
			d = x
		}
	}
	if d.Name == "" {
		t.Fatalf("ob1 is not in top: %+v", top)
	}
	if got := value(t, fams, "ringfence_domain_cpu_seconds_total", "ob1"); got <= 0 || math.Abs(got-d.CPUSec) > 3 {
		t.Errorf("cpu seconds: metrics %.2f, top %.2f", got, d.CPUSec)
	}
	if got := value(t, fams, "ringfence_domain_steal_seconds_total", "ob1"); got < 0 || math.Abs(got-float64(d.WaitNs)/1e9) > 3 {
		t.Errorf("steal seconds: metrics %.2f, top %.2f", got, float64(d.WaitNs)/1e9)
	}
	if got := value(t, fams, "ringfence_domain_memory_bytes", "ob1"); got != float64(d.MemKiB*1024) {
		t.Errorf("memory: metrics %.0f, top %d KiB", got, d.MemKiB)
	}
	if got := value(t, fams, "ringfence_domain_vcpus", "ob1"); got != float64(d.VCPUs) {
		t.Errorf("vcpus: metrics %.0f, top %d", got, d.VCPUs)
	}
	if got := value(t, fams, "ringfence_domain_disk_read_ops_total", "ob1"); got < float64(d.VBDRd) {
		t.Errorf("disk read ops: metrics %.0f, top %d (a counter only grows)", got, d.VBDRd)
	}
	for _, name := range []string{"ringfence_domain_balloon_bytes", "ringfence_domain_disk_read_bytes_total", "ringfence_domain_disk_write_bytes_total",
		"ringfence_domain_disk_write_ops_total", "ringfence_domain_net_rx_bytes_total", "ringfence_domain_net_tx_bytes_total"} {
		value(t, fams, name, "ob1")
	}
	h, err := e.Client.Host(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := value(t, fams, "ringfence_ledger_free_bytes", ""); got != float64(h.Ledger.FreeMiB)*(1<<20) {
		t.Errorf("ledger free: metrics %.0f, info %d MiB", got, h.Ledger.FreeMiB)
	}
	if got := value(t, fams, "ringfence_ledger_domain_bytes", "ob1"); got <= 128<<20 {
		t.Errorf("ledger for ob1: %.0f bytes, want its 128 MiB and QEMU's overhead", got)
	}
	if got := value(t, fams, "ringfence_ledger_vcpus", ""); got != 1 {
		t.Errorf("ledger vCPUs: %.0f", got)
	}
	checkDeviceMetrics(t, fams, top)
}

// checkDeviceMetrics: every disk and vif top shows has its series, under
// its domain-file name (xvdb) or its index and tap, near what top showed
// (taken a moment apart); the per-device series of one scrape add up to
// the domain's.
func checkDeviceMetrics(t *testing.T, fams map[string]*dto.MetricFamily, top api.Stats) {
	t.Helper()
	var d api.DomainStats
	for _, x := range top.Domains {
		if x.Name == "ob1" {
			d = x
		}
	}
	if len(d.Disks) != 1 || d.Disks[0].VDev != "xvdb" || len(d.Vifs) != 1 || d.Vifs[0].Tap == "" {
		t.Fatalf("top --json's devices of ob1: disks %+v, vifs %+v", d.Disks, d.Vifs)
	}
	series := func(name string, labels map[string]string) float64 {
		t.Helper()
		for _, m := range fams[name].GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if maps.Equal(got, labels) {
				return m.GetCounter().GetValue()
			}
		}
		t.Fatalf("no %s%v in the metrics", name, labels)
		return 0
	}
	dk := d.Disks[0]
	disk := map[string]string{"domain": "ob1", "disk": "xvdb"}
	for name, topv := range map[string]int64{"ringfence_disk_read_bytes_total": dk.RdBytes, "ringfence_disk_read_ops_total": dk.RdOps,
		"ringfence_disk_write_bytes_total": dk.WrBytes, "ringfence_disk_write_ops_total": dk.WrOps} {
		if got := series(name, disk); math.Abs(got-float64(topv)) > near(name) {
			t.Errorf("%s%v = %.0f, top %d", name, disk, got, topv)
		}
	}
	if got := series("ringfence_disk_read_bytes_total", disk); got <= 0 || got != value(t, fams, "ringfence_domain_disk_read_bytes_total", "ob1") {
		t.Errorf("xvdb's read bytes %.0f: want the guest's probe of it, and the domain's whole (its one disk)", got)
	}
	v := d.Vifs[0]
	vif := map[string]string{"domain": "ob1", "vif": "0", "tap": v.Tap}
	for name, topv := range map[string]int64{"ringfence_vif_rx_bytes_total": v.RxBytes, "ringfence_vif_tx_bytes_total": v.TxBytes,
		"ringfence_vif_rx_packets_total": v.RxPackets, "ringfence_vif_tx_packets_total": v.TxPackets} {
		if got := series(name, vif); math.Abs(got-float64(topv)) > near(name) {
			t.Errorf("%s%v = %.0f, top %d", name, vif, got, topv)
		}
	}
	if got, dom := series("ringfence_vif_tx_bytes_total", vif), value(t, fams, "ringfence_domain_net_tx_bytes_total", "ob1"); got != dom {
		t.Errorf("vif 0 sent %.0f bytes, the domain %.0f: its one vif is all of it", got, dom)
	}
}

// near is how far a counter may move between a scrape and top's sample.
func near(name string) float64 {
	if strings.Contains(name, "bytes") {
		return 1 << 20
	}
	return 1000
}
