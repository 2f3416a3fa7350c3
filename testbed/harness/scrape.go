package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are the metric families of one scrape, by name.
type Families map[string]*dto.MetricFamily

// maxScrape bounds a scrape body; the collector's own endpoint is a few hundred KiB.
const maxScrape = 64 << 20

// Scrape reads a Prometheus text endpoint.
func Scrape(ctx context.Context, url string) (Families, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		return nil, err
	}
	// Ask for the classic text format: it is what expfmt's text parser reads.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, maxScrape))
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", url, err)
	}
	return Families(fams), nil
}

// family finds a family by name, with or without the _total suffix of counters: the
// collector's own metrics and the prometheus exporter do not agree on it at every version.
func (f Families) family(name string) (*dto.MetricFamily, bool) {
	if fam, ok := f[name]; ok {
		return fam, true
	}
	if trimmed, ok := strings.CutSuffix(name, "_total"); ok {
		fam, ok := f[trimmed]
		return fam, ok
	}
	fam, ok := f[name+"_total"]
	return fam, ok
}

// Sum adds the values of every series of the named family whose labels include match
// (counters, gauges, untyped; for histograms and summaries, the count). A counter's name
// matches with or without _total.
func (f Families) Sum(name string, match map[string]string) float64 {
	fam, ok := f.family(name)
	if !ok {
		return 0
	}
	total := 0.0
	for _, m := range fam.GetMetric() {
		if !labelsMatch(m, match) {
			continue
		}
		total += value(m)
	}
	return total
}

// Has reports whether the family exists (a counter with or without _total).
func (f Families) Has(name string) bool {
	_, ok := f.family(name)
	return ok
}

// ByLabel sums the named family per value of one label.
func (f Families) ByLabel(name, label string, match map[string]string) map[string]float64 {
	out := map[string]float64{}
	fam, ok := f.family(name)
	if !ok {
		return out
	}
	for _, m := range fam.GetMetric() {
		if !labelsMatch(m, match) {
			continue
		}
		v := ""
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label {
				v = lp.GetValue()
			}
		}
		out[v] += value(m)
	}
	return out
}

// Matching returns the total of every family whose name matches re, by family name.
func (f Families) Matching(re *regexp.Regexp) map[string]float64 {
	out := map[string]float64{}
	for name := range f {
		if re.MatchString(name) {
			out[name] = f.Sum(name, nil)
		}
	}
	return out
}

// Names returns the family names, sorted.
func (f Families) Names() []string {
	out := make([]string, 0, len(f))
	for n := range f {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func labelsMatch(m *dto.Metric, match map[string]string) bool {
	for k, want := range match {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k {
				found = lp.GetValue() == want
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	case m.Summary != nil:
		return float64(m.GetSummary().GetSampleCount())
	}
	return 0
}

// dropMetrics matches the collector's own counters of items refused or lost anywhere in a
// pipeline: refused or failed by a receiver, failed to send or to enqueue by an exporter.
var dropMetrics = regexp.MustCompile(`^otelcol_(receiver_(refused|failed)|exporter_(send_failed|enqueue_failed))_(spans|log_records|metric_points)(_total)?$`)

// Drops returns the collector's own drop counters that are non-zero, by metric name.
func (f Families) Drops() map[string]float64 {
	out := map[string]float64{}
	for name, v := range f.Matching(dropMetrics) {
		if v != 0 {
			out[name] = v
		}
	}
	return out
}
