package main

import (
	"context"
	"fmt"
	"net/http"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads a Prometheus text endpoint.
func scrape(ctx context.Context, client *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// sumCounter adds up the samples of a counter (or gauge) whose labels have
// the values in match.
func sumCounter(families map[string]*dto.MetricFamily, name string, match map[string]string) float64 {
	mf, ok := families[name]
	if !ok {
		return 0
	}
	total := 0.0
	for _, m := range mf.GetMetric() {
		if !labelsMatch(m, match) {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Untyped != nil:
			total += m.GetUntyped().GetValue()
		}
	}
	return total
}

func labelsMatch(m *dto.Metric, match map[string]string) bool {
	for k, want := range match {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == k {
				found = l.GetValue() == want
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// sumHistogram adds up the sample sums and counts of a histogram whose labels
// have the values in match.
func sumHistogram(families map[string]*dto.MetricFamily, name string, match map[string]string) (sum, count float64) {
	mf, ok := families[name]
	if !ok {
		return 0, 0
	}
	for _, m := range mf.GetMetric() {
		if h := m.GetHistogram(); h != nil && labelsMatch(m, match) {
			sum += h.GetSampleSum()
			count += float64(h.GetSampleCount())
		}
	}
	return sum, count
}

// goRuntime is what a Go process's metrics say of its memory.
type goRuntime struct {
	HeapInuseBytes  float64 `json:"heapInuseBytes"`
	StackInuseBytes float64 `json:"stackInuseBytes"`
	Goroutines      float64 `json:"goroutines"`
}

func goRuntimeOf(mf map[string]*dto.MetricFamily) goRuntime {
	return goRuntime{
		HeapInuseBytes:  sumCounter(mf, "go_memstats_heap_inuse_bytes", nil),
		StackInuseBytes: sumCounter(mf, "go_memstats_stack_inuse_bytes", nil),
		Goroutines:      sumCounter(mf, "go_goroutines", nil),
	}
}

// perBreaker is the growth from idle to steady per breaker: heap and stack
// KiB, and goroutines.
func (g goRuntime) perBreaker(idle goRuntime, n int) (heapKiB, stackKiB, goroutines float64) {
	if n == 0 {
		return 0, 0, 0
	}
	f := float64(n)
	return (g.HeapInuseBytes - idle.HeapInuseBytes) / 1024 / f, (g.StackInuseBytes - idle.StackInuseBytes) / 1024 / f,
		(g.Goroutines - idle.Goroutines) / f
}
