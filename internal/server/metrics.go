package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/suserve/suserve/internal/cell"
)

// metrics are the Prometheus series of one server, on a registry of its own
// (never the global one) served by the admin listener at /metrics.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration prometheus.Histogram
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suserve_requests_total",
			Help: "Requests answered, by status code and failure cause (\"\" for none).",
		}, []string{"code", "cause"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "suserve_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its response.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
	m.reg.MustRegister(m.requests, m.duration,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "suserve_requests_in_flight",
			Help: "Requests being served.",
		}, func() float64 { return float64(s.Active()) }),
	)
	if p := s.opts.Cells; p != nil {
		m.reg.MustRegister(cellCollector{p})
	}
	return m
}

// observe counts one answered request. The cause is a class ("exited",
// "refused: symlink in path", "cell budget full"), never a detail, so the
// label stays bounded.
func (m *metrics) observe(status int, cause string, d time.Duration) {
	m.requests.WithLabelValues(strconv.Itoa(status), cause).Inc()
	m.duration.Observe(d.Seconds())
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// cellCollector reads the cell pool's counters at scrape time.
type cellCollector struct{ p *cell.Pool }

var (
	cellsDesc     = prometheus.NewDesc("suserve_cells", "Cells that exist, by state.", []string{"state"}, nil)
	cellsMaxDesc  = prometheus.NewDesc("suserve_cells_max", "Cells the budget allows: budget / cell_memory.", nil, nil)
	cellQueueDesc = prometheus.NewDesc("suserve_cell_queue", "Requests waiting for a cell.", nil, nil)
	cellEvDesc    = prometheus.NewDesc("suserve_cell_events_total", "Cell admissions and their outcomes.", []string{"event"}, nil)
)

func (c cellCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cellsDesc
	ch <- cellsMaxDesc
	ch <- cellQueueDesc
	ch <- cellEvDesc
}

func (c cellCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.p.Stats()
	ch <- prometheus.MustNewConstMetric(cellsDesc, prometheus.GaugeValue, float64(st.Busy), "busy")
	ch <- prometheus.MustNewConstMetric(cellsDesc, prometheus.GaugeValue, float64(st.Cells-st.Busy), "idle")
	ch <- prometheus.MustNewConstMetric(cellsMaxDesc, prometheus.GaugeValue, float64(st.MaxCells))
	ch <- prometheus.MustNewConstMetric(cellQueueDesc, prometheus.GaugeValue, float64(st.Queued))
	for _, e := range []struct {
		name string
		n    uint64
	}{
		{"admitted", st.Admitted}, {"created", st.Created}, {"evicted", st.Evicted},
		{"idle_evicted", st.IdleEvicted}, {"refused", st.Refused}, {"waited", st.Waited},
	} {
		ch <- prometheus.MustNewConstMetric(cellEvDesc, prometheus.CounterValue, float64(e.n), e.name)
	}
}
