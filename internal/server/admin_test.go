package server

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestStatusPageAndMetricsShowFailuresWithTheirCauses(t *testing.T) {
	ts, _ := demoServer(t)
	admin := httptest.NewServer(ts.srv.adminHandler())
	t.Cleanup(admin.Close)

	get(t, ts.URL+"/cgi-bin/hello", nil)
	get(t, ts.URL+"/cgi-bin/exit3", nil)
	get(t, ts.URL+"/cgi-bin/exit3", nil)

	_, page := get(t, admin.URL+"/", nil)
	for _, want := range []string{"Recent failures (2 since start)", "/cgi-bin/exit3", "exited", "budget 4GiB / cell_memory 256MiB = 16 cells"} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	_, m := get(t, admin.URL+"/metrics", nil)
	for _, want := range []string{
		`suserve_requests_total{cause="",code="200"} 1`,
		`suserve_requests_total{cause="exited",code="502"} 2`,
		`suserve_request_duration_seconds_count 3`,
		"suserve_requests_in_flight 0",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
	if ts.srv.opts.Cells != nil && !strings.Contains(m, `suserve_cells_max 16`) {
		t.Errorf("metrics lack the cell budget:\n%s", m)
	}
}
