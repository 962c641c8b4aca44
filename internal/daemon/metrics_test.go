package daemon

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
	h := metricsHandler(collector{func() api.Stats { return st }, func() api.Ledger { return led }})
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
