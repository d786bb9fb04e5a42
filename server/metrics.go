package server

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mcpauthz/mcpauthz/credentials/connections"
	"github.com/mcpauthz/mcpauthz/policy"
	"github.com/mcpauthz/mcpauthz/server/decisionlog"
)

// metrics holds the Prometheus collectors of one Service on its own
// registry (no global registry, so tests and several services coexist).
type metrics struct {
	reg     *prometheus.Registry
	checks  *prometheus.CounterVec
	latency *prometheus.HistogramVec
	series  sync.Map // counterKey -> *series, avoids label lookups per Check
	nSeries atomic.Int64
}

// series are the collectors of one label combination.
type series struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

// maxSeries bounds label cardinality: reasons come from policies, and a
// policy that puts free text in `reason` must not explode the metrics.
// Combinations beyond the bound are counted under reason "other".
const maxSeries = 512

func newMetrics(s *Service) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.checks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mcpauthz", Name: "checks_total",
		Help: "ext_authz Checks by decision, reason, HTTP status and MCP server.",
	}, []string{"decision", "reason", "status", "server"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "mcpauthz", Name: "check_duration_seconds",
		Help:    "Latency of ext_authz Checks by decision and reason.",
		Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05, .25, 1},
	}, []string{"decision", "reason"})
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "mcpauthz", Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "mcpauthz", Name: name, Help: help}, f)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.checks, m.latency,
		counter("token_cache_hits_total", "Verified-token cache hits.", func() float64 { return float64(s.verifier.Metrics().Hits) }),
		counter("token_cache_misses_total", "Verified-token cache misses.", func() float64 { return float64(s.verifier.Metrics().Misses) }),
		gauge("token_cache_hit_ratio", "Verified-token cache hit ratio since start.", func() float64 {
			cm := s.verifier.Metrics()
			if cm.Hits+cm.Misses == 0 {
				return 0
			}
			return float64(cm.Hits) / float64(cm.Hits+cm.Misses)
		}),
		gauge("policy_ready", "1 when a policy bundle is serving.", func() float64 {
			if s.policy.Status().Ready {
				return 1
			}
			return 0
		}),
		gauge("policy_last_load_failed", "1 when the latest bundle load failed (the previous policy keeps serving).", func() float64 {
			if s.policy.Status().LastError != "" {
				return 1
			}
			return 0
		}),
		counter("policy_loads_total", "Successful policy bundle loads.", func() float64 { return float64(s.policy.Status().Loads) }),
		counter("policy_load_failures_total", "Failed policy bundle loads.", func() float64 { return float64(s.policy.Status().Failures) }),
		counter("decision_cache_hits_total", "Memoized policy decisions served (deterministic policies only).", func() float64 { return float64(decisionCacheStats(s.policy).Hits) }),
		counter("decision_cache_misses_total", "Policy evaluations that could have been memoized but were not cached yet.", func() float64 { return float64(decisionCacheStats(s.policy).Misses) }),
		counter("decision_log_dropped_total", "Decision log entries dropped because the queue was full.", func() float64 { return float64(s.audit.dropped.Load()) }),
		counter("decision_log_written_total", "Decision log entries written.", func() float64 { return float64(s.audit.written.Load()) }),
		gauge("sessions_bound", "MCP session ids bound to a principal.", func() float64 { return float64(sessionCount(s.sessions)) }),
		sourceCollector{s.policy},
	)
	if s.extproc != nil {
		st := s.extproc.Stats
		m.reg.MustRegister(
			counter("extproc_streams_total", "ext_proc streams (responses seen).", func() float64 { return float64(st().Streams) }),
			counter("extproc_lists_filtered_total", "List results filtered by policy.", func() float64 { return float64(st().Lists) }),
			counter("extproc_entries_removed_total", "List entries removed because the caller may not use them.", func() float64 { return float64(st().EntriesRemoved) }),
			counter("extproc_failed_closed_total", "Responses refused because they could not be filtered safely.", func() float64 { return float64(st().FailedClosed) }),
			counter("extproc_missing_metadata_total", "Requests reaching ext_proc without ext_authz's hand-off.", func() float64 { return float64(st().MissingMetadata) }),
			counter("extproc_upstream_rejections_total", "Upstream 401 answers to a credential mcpauthz set.", func() float64 { return float64(st().UpstreamRejections) }),
		)
	}
	if s.connections != nil {
		m.reg.MustRegister(connectionsCollector{s.connections.Stats})
	}
	if s.opa != nil {
		st := func() decisionlog.Stats { return s.opa.Stats() }
		m.reg.MustRegister(
			counter("opa_decision_log_logged_total", "OPA-format decision log events accepted.", func() float64 { return float64(st().Logged) }),
			counter("opa_decision_log_uploaded_total", "OPA-format decision log events delivered (file or HTTP).", func() float64 { return float64(st().Uploaded) }),
			counter("opa_decision_log_dropped_total", "OPA-format decision log events dropped (buffer full, refused batch, undelivered at shutdown).", func() float64 { return float64(st().Dropped) }),
			counter("opa_decision_log_failed_uploads_total", "OPA-format decision log uploads that failed.", func() float64 { return float64(st().FailedUploads) }),
			gauge("opa_decision_log_pending", "OPA-format decision log events waiting to be delivered.", func() float64 { return float64(st().Pending) }),
		)
	}
	return m
}

// sourceCollector exports per-bundle-source health at scrape time.
type sourceCollector struct{ p policyEvaluator }

var (
	sourceOKDesc = prometheus.NewDesc("mcpauthz_policy_source_ok",
		"1 when the bundle source's last load or download succeeded (0: the previous bundle keeps serving).",
		[]string{"source", "activated_from"}, nil)
	sourceSuccessDesc = prometheus.NewDesc("mcpauthz_policy_source_last_success_timestamp_seconds",
		"Unix time of the bundle source's last successful load or download.", []string{"source"}, nil)
)

func (sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sourceOKDesc
	ch <- sourceSuccessDesc
}

func (c sourceCollector) Collect(ch chan<- prometheus.Metric) {
	for _, src := range c.p.Status().Sources {
		ok := 1.0
		if src.LastError != "" {
			ok = 0
		}
		ch <- prometheus.MustNewConstMetric(sourceOKDesc, prometheus.GaugeValue, ok, src.Name, src.ActivatedFrom)
		if !src.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(sourceSuccessDesc, prometheus.GaugeValue,
				float64(src.LastSuccess.UnixNano())/1e9, src.Name)
		}
	}
}

type counterKey struct {
	allow          bool
	reason, server string
	status         int
}

func (m *metrics) observe(r *record) {
	k := counterKey{r.Allow, r.Reason, r.Server, r.Status}
	v, ok := m.series.Load(k)
	if !ok {
		if m.nSeries.Load() >= maxSeries {
			k.reason = "other"
			v, ok = m.series.Load(k)
		}
		if !ok {
			d := "deny"
			if r.Allow {
				d = "allow"
			}
			var loaded bool
			v, loaded = m.series.LoadOrStore(k, &series{
				count:   m.checks.WithLabelValues(d, k.reason, strconv.Itoa(r.Status), r.Server),
				latency: m.latency.WithLabelValues(d, k.reason),
			})
			if !loaded {
				m.nSeries.Add(1)
			}
		}
	}
	sr := v.(*series)
	sr.count.Inc()
	sr.latency.Observe(float64(r.LatencyUS) / 1e6)
}

// decisionCacheStats reads the policy engine's decision cache counters when
// it has one.
func decisionCacheStats(p policyEvaluator) policy.CacheStats {
	if c, ok := p.(interface{ DecisionCacheStats() policy.CacheStats }); ok {
		return c.DecisionCacheStats()
	}
	return policy.CacheStats{}
}

// connectionsCollector exports per-user connection counts and flows.
type connectionsCollector struct{ stats func() connections.Stats }

var (
	connByStatusDesc = prometheus.NewDesc("mcpauthz_connections",
		"Stored connections by server and status (as of the latest refresh sweep).", []string{"server", "status"}, nil)
	connRefreshDesc = prometheus.NewDesc("mcpauthz_connection_refreshes_total",
		"Connection token refreshes by outcome.", []string{"outcome"}, nil)
	connFlowDesc = prometheus.NewDesc("mcpauthz_connect_flows_total",
		"Connect flows by outcome (started, completed, failed).", []string{"outcome"}, nil)
)

func (connectionsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- connByStatusDesc
	ch <- connRefreshDesc
	ch <- connFlowDesc
}

func (c connectionsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	for srv, byStatus := range st.ByServerStatus {
		for status, n := range byStatus {
			ch <- prometheus.MustNewConstMetric(connByStatusDesc, prometheus.GaugeValue, float64(n), srv, string(status))
		}
	}
	for outcome, n := range st.Refreshes {
		ch <- prometheus.MustNewConstMetric(connRefreshDesc, prometheus.CounterValue, float64(n), outcome)
	}
	for outcome, n := range st.Flows {
		ch <- prometheus.MustNewConstMetric(connFlowDesc, prometheus.CounterValue, float64(n), outcome)
	}
}
