package daemon

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ringfence/ringfence/internal/api"
)

// The metrics are the sample's and the ledger's figures, in units
// Prometheus expects (seconds, bytes), for domains that appear after the
// handler was made too.
func TestMetrics(t *testing.T) {
	var st api.Stats
	led := api.Ledger{TotalMiB: 4096, ReservedMiB: 512, FreeMiB: 3000, VCPUsFree: 3,
		Entries: []api.LedgerEntry{{Domain: "g1", MemoryMiB: 512, OverheadMiB: 72, VCPUs: 1}}}
	h := metricsHandler(collector{stats: func() api.Stats { return st }, ledger: func() api.Ledger { return led }})
	st.Domains = []api.DomainStats{{Name: "g1", CPUSec: 12.5, WaitNs: 2e9, MemKiB: 524288, BalloonKiB: 524288, VCPUs: 1,
		VBDRd: 7, VBDRdBytes: 4096, NetRxBytes: 1500}}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(w.Body.String()))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"ringfence_domain_cpu_seconds_total":     12.5,
		"ringfence_domain_steal_seconds_total":   2,
		"ringfence_domain_memory_bytes":          512 << 20,
		"ringfence_domain_balloon_bytes":         512 << 20,
		"ringfence_domain_disk_read_ops_total":   7,
		"ringfence_domain_disk_read_bytes_total": 4096,
		"ringfence_domain_net_rx_bytes_total":    1500,
		"ringfence_ledger_domain_bytes":          584 << 20,
		"ringfence_ledger_committed_bytes":       584 << 20,
		"ringfence_ledger_free_bytes":            3000 << 20,
		"ringfence_ledger_vcpus":                 1,
		"ringfence_ledger_vcpus_free":            3,
	} {
		f := fams[name]
		if f == nil || len(f.Metric) != 1 {
			t.Errorf("%s: %v", name, f)
			continue
		}
		m := f.Metric[0]
		got := m.GetGauge().GetValue()
		if m.Counter != nil {
			got = m.GetCounter().GetValue()
		}
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
		if strings.HasPrefix(name, "ringfence_domain_") && (len(m.Label) != 1 || m.Label[0].GetValue() != "g1") {
			t.Errorf("%s labels %v", name, m.Label)
		}
	}
}

// Per-device series: each disk under its domain-file name, each vif
// under its index and tap, with the device's own counters.
func TestDeviceMetrics(t *testing.T) {
	st := api.Stats{Domains: []api.DomainStats{{Name: "g1",
		Disks: []api.DiskStats{{VDev: "xvda", Guest: "vda", RdOps: 3, WrOps: 4, RdBytes: 512, WrBytes: 1024}, {VDev: "xvdb", Guest: "vdb", RdBytes: 7}},
		Vifs:  []api.VifStats{{Index: 0, Tap: "rf1t0", RxBytes: 100, TxBytes: 200, RxPackets: 2, TxPackets: 3}},
	}}}
	h := metricsHandler(collector{stats: func() api.Stats { return st }, ledger: func() api.Ledger { return api.Ledger{} }})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(w.Body.String()))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"ringfence_disk_read_bytes_total", map[string]string{"domain": "g1", "disk": "xvda"}, 512},
		{"ringfence_disk_write_bytes_total", map[string]string{"domain": "g1", "disk": "xvda"}, 1024},
		{"ringfence_disk_read_ops_total", map[string]string{"domain": "g1", "disk": "xvda"}, 3},
		{"ringfence_disk_write_ops_total", map[string]string{"domain": "g1", "disk": "xvda"}, 4},
		{"ringfence_disk_read_bytes_total", map[string]string{"domain": "g1", "disk": "xvdb"}, 7},
		{"ringfence_vif_rx_bytes_total", map[string]string{"domain": "g1", "vif": "0", "tap": "rf1t0"}, 100},
		{"ringfence_vif_tx_bytes_total", map[string]string{"domain": "g1", "vif": "0", "tap": "rf1t0"}, 200},
		{"ringfence_vif_rx_packets_total", map[string]string{"domain": "g1", "vif": "0", "tap": "rf1t0"}, 2},
		{"ringfence_vif_tx_packets_total", map[string]string{"domain": "g1", "vif": "0", "tap": "rf1t0"}, 3},
	} {
		if got, ok := seriesValue(fams[c.name], c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
}

// seriesValue is the counter or gauge of f's series with exactly labels.
func seriesValue(f *dto.MetricFamily, labels map[string]string) (float64, bool) {
	if f == nil {
		return 0, false
	}
	for _, m := range f.Metric {
		if len(m.Label) != len(labels) {
			continue
		}
		match := true
		for _, l := range m.Label {
			match = match && labels[l.GetName()] == l.GetValue()
		}
		if match {
			if m.Counter != nil {
				return m.GetCounter().GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}
