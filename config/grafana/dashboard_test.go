// Package grafana holds the Grafana dashboard of the breaker-operator. It has
// no Go code of its own; its test checks that the dashboard is well formed and
// queries only the metrics that internal/metrics exports.
package grafana

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/resilience-dev/breaker-operator/internal/metrics"
)

const dashboardFile = "circuitbreaker-dashboard.json"

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	GridPos    struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Targets     []target `json:"targets"`
	FieldConfig struct {
		Defaults struct {
			Mappings []struct {
				Type    string `json:"type"`
				Options map[string]struct {
					Text  string `json:"text"`
					Color string `json:"color"`
				} `json:"options"`
			} `json:"mappings"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	// Panels are the panels of a collapsed row.
	Panels []panel `json:"panels"`
}

type target struct {
	RefID      string         `json:"refId"`
	Expr       string         `json:"expr"`
	Datasource *datasourceRef `json:"datasource"`
}

type variable struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Datasource *datasourceRef `json:"datasource"`
	// Query is a string for datasource variables and an object for the
	// Prometheus query editor's variables.
	Query json.RawMessage `json:"query"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardFile, err)
	}
	if dec.More() {
		t.Fatalf("%s holds more than one JSON value", dashboardFile)
	}
	return d
}

// allPanels flattens rows into their panels.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// exportedMetrics returns the names a query may select: every family that
// internal/metrics registers on controller-runtime's registry, with the
// _bucket, _sum and _count series of its histograms. Vectors without series
// are not gathered, so the test first gives every collector one series.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	metrics.SetState("dashboard-test", "cb", "Closed", 0)
	metrics.ObserveTransition("dashboard-test", "cb", "Closed", "Open")
	metrics.ObserveProbe("dashboard-test", "cb", false, "timeout", time.Second)
	metrics.SetEnforcement("dashboard-test", "cb", "Fallback", 1)
	defer metrics.Forget("dashboard-test", "cb")

	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range families {
		name := mf.GetName()
		if !strings.HasPrefix(name, "circuitbreaker_") {
			continue
		}
		names[name] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[name+suffix] = true
			}
		}
	}
	// Guards the guard: if the calls above stop touching a collector, its
	// metric would be wrongly refused; if they touch none, everything would be.
	if len(names) != 11 {
		t.Fatalf("expected the 8 circuitbreaker_* families (11 names with the histogram series), got %v", slices.Sorted(maps.Keys(names)))
	}
	return names
}

func TestDashboardIsWellFormedGrafanaJSON(t *testing.T) {
	g := NewWithT(t)
	d := loadDashboard(t)
	g.Expect(d.UID).NotTo(BeEmpty())
	g.Expect(len(d.UID)).To(BeNumerically("<=", 40), "Grafana limits uids to 40 characters")
	g.Expect(d.Title).NotTo(BeEmpty())
	g.Expect(d.SchemaVersion).To(BeNumerically(">=", 36), "datasource references by uid need schemaVersion 36 or later")

	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	g.Expect(vars).To(HaveKey("datasource"))
	g.Expect(vars["datasource"].Type).To(Equal("datasource"))
	g.Expect(string(vars["datasource"].Query)).To(Equal(`"prometheus"`))
	g.Expect(vars).To(HaveKey("namespace"))
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			g.Expect(v.Datasource).To(Equal(&datasourceRef{Type: "prometheus", UID: "${datasource}"}), "variable %s", v.Name)
		}
	}

	panels := allPanels(d.Panels)
	g.Expect(panels).NotTo(BeEmpty())
	ids := map[int]bool{}
	for _, p := range panels {
		g.Expect(ids).NotTo(HaveKey(p.ID), "panel id %d is used twice", p.ID)
		ids[p.ID] = true
		g.Expect(p.Title).NotTo(BeEmpty(), "panel %d", p.ID)
		if p.Type == "row" {
			continue
		}
		g.Expect([]string{"stat", "timeseries", "state-timeline", "table", "bargauge", "gauge", "heatmap"}).
			To(ContainElement(p.Type), "panel %q", p.Title)
		g.Expect(p.GridPos.W).To(BeNumerically(">", 0), "panel %q", p.Title)
		g.Expect(p.GridPos.H).To(BeNumerically(">", 0), "panel %q", p.Title)
		g.Expect(p.GridPos.X+p.GridPos.W).To(BeNumerically("<=", 24), "panel %q is wider than the grid", p.Title)
		g.Expect(p.Datasource).To(Equal(&datasourceRef{Type: "prometheus", UID: "${datasource}"}), "panel %q", p.Title)
		g.Expect(p.Targets).NotTo(BeEmpty(), "panel %q", p.Title)
		refIDs := map[string]bool{}
		for _, tg := range p.Targets {
			g.Expect(tg.RefID).NotTo(BeEmpty(), "panel %q", p.Title)
			g.Expect(refIDs).NotTo(HaveKey(tg.RefID), "panel %q repeats refId %s", p.Title, tg.RefID)
			refIDs[tg.RefID] = true
			g.Expect(strings.TrimSpace(tg.Expr)).NotTo(BeEmpty(), "panel %q target %s", p.Title, tg.RefID)
			if tg.Datasource != nil {
				g.Expect(tg.Datasource.UID).To(Equal("${datasource}"), "panel %q target %s", p.Title, tg.RefID)
			}
		}
	}
}

func TestDashboardHasThePanelsTheIssueAsksFor(t *testing.T) {
	g := NewWithT(t)
	var timeline *panel
	exprs := map[string][]string{}
	for _, p := range allPanels(loadDashboard(t).Panels) {
		for _, tg := range p.Targets {
			exprs[p.Type] = append(exprs[p.Type], tg.Expr)
		}
		if p.Type == "state-timeline" {
			timeline = &p
		}
	}
	g.Expect(timeline).NotTo(BeNil(), "a state-timeline of the breakers' states")
	colors := map[string]string{}
	for _, m := range timeline.FieldConfig.Defaults.Mappings {
		for value, o := range m.Options {
			colors[value] = o.Text + "/" + o.Color
		}
	}
	g.Expect(colors).To(Equal(map[string]string{"0": "Closed/green", "1": "HalfOpen/yellow", "2": "Open/red"}))

	g.Expect(exprs["state-timeline"]).To(ContainElement(ContainSubstring("circuitbreaker_state")))
	g.Expect(exprs["stat"]).To(ContainElement(ContainSubstring(`state="Open"`)), "a stat of the breakers currently open")
	series := exprs["timeseries"]
	g.Expect(series).To(ContainElement(ContainSubstring("circuitbreaker_transitions_total")))
	g.Expect(series).To(ContainElement(ContainSubstring("circuitbreaker_probe_failures_total")))
	g.Expect(series).To(ContainElement(ContainSubstring("circuitbreaker_consecutive_failures")))
	g.Expect(series).To(ContainElement(ContainSubstring("circuitbreaker_endpoints_ejected")), "spec.enforce: ejected endpoints")
	g.Expect(series).To(ContainElement(ContainSubstring("circuitbreaker_routing")), "spec.enforce: where guarded Services route")
	for _, q := range []string{"0.5", "0.9", "0.99"} {
		g.Expect(series).To(ContainElement(ContainSubstring("histogram_quantile(" + q + ", ")))
	}
}

func TestDashboardQueriesOnlyExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	d := loadDashboard(t)
	check := func(where, expr string, names []string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v in %q", where, err, expr)
			return
		}
		if len(names) == 0 {
			t.Errorf("%s: %q selects no metric", where, expr)
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("%s: %q selects %s, which internal/metrics does not export", where, expr, n)
			}
		}
	}
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			names, err := metricNames(tg.Expr)
			check(fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), tg.Expr, names, err)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			// Older dashboards store the query as a plain string.
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				t.Errorf("variable %s: query is neither an object nor a string: %s", v.Name, v.Query)
				continue
			}
		}
		names, err := variableMetricNames(q.Query)
		check("variable "+v.Name, q.Query, names, err)
	}
}

func TestMetricNamesExtractsSelectorsOnly(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`circuitbreaker_state`, []string{"circuitbreaker_state"}},
		{`up{job="x"} == 1`, []string{"up"}},
		{`sum by (namespace, name) (rate(foo_total{a="rate(bar)", b=~"x|y"}[5m]))`, []string{"foo_total"}},
		{`sum without (le) (foo) / on (ns) group_left (name) bar`, []string{"foo", "bar"}},
		{`histogram_quantile(0.99, sum(rate(h_bucket[$__rate_interval])) by (le))`, []string{"h_bucket"}},
		{`max by (namespace, name) (s{state="Open"}) * 2 + max by (namespace, name)(s{state="HalfOpen"})`, []string{"s", "s"}},
		{`sum(x) or vector(0)`, []string{"x"}},
		{`x offset 5m and y @ start() unless z > bool 1e-3`, []string{"x", "y", "z"}},
		{`label_replace(x, "dst", "$1", "src", "(.*)")`, []string{"x"}},
		{`count_values("value", x) + Inf - NaN`, []string{"x"}},
		{"a{n=~\"${namespace:regex}\"} # comment with notametric\n+ b", []string{"a", "b"}},
		{`sum(rate(x[5m:1m]))`, []string{"x"}},
		{`{__name__="sneaky"}`, nil},
		{`rate(x[1m]) * 60`, []string{"x"}},
		{`a:recorded:rate5m`, []string{"a:recorded:rate5m"}},
		{`sum by(le)(x)`, []string{"x"}},
		{`topk(5, x) > 0x1F`, []string{"x"}},
		{`x offset 1h30m + y offset 250ms - 1.5E+3`, []string{"x", "y"}},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			got, err := metricNames(tc.expr)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("expected an error, got %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMetricNamesRefusesWhatItCannotVouchFor(t *testing.T) {
	for _, expr := range []string{
		`unknown_function(x)`,
		`{__name__=~"circuitbreaker_.*"}`,
		`x{a="unterminated}`,
		`rate(x[5m)`,
		`sum(x`,
		`x{a="1"`,
		`x}`,
		`2e-x`,
		`5foo`,
		`x offset 5mfoo`,
	} {
		t.Run(expr, func(t *testing.T) {
			if got, err := metricNames(expr); err == nil {
				t.Fatalf("expected an error, got %v", got)
			}
		})
	}
}

func TestVariableMetricNames(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  []string
		fails bool
	}{
		{query: `label_values(circuitbreaker_state, namespace)`, want: []string{"circuitbreaker_state"}},
		{query: `label_values(circuitbreaker_state{namespace=~"$namespace"}, name)`, want: []string{"circuitbreaker_state"}},
		{query: `label_values(namespace)`, want: nil},
		{query: `query_result(sum by (name) (x))`, want: []string{"x"}},
		{query: `metrics(circuitbreaker_.*)`, fails: true},
		{query: `label_values(x, a, b)`, fails: true},
	} {
		t.Run(tc.query, func(t *testing.T) {
			got, err := variableMetricNames(tc.query)
			if tc.fails {
				if err == nil {
					t.Fatalf("expected an error, got %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// promqlFunctions are PromQL's functions and the two @ modifiers' functions.
// An identifier followed by "(" must be one of them or an aggregation.
var promqlFunctions = setOf(
	"abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
	"avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
	"count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
	"delta", "deriv", "double_exponential_smoothing", "end", "exp", "floor", "histogram_avg",
	"histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev",
	"histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta", "increase", "info",
	"irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
	"mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi",
	"predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
	"round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc",
	"sort_desc", "sqrt", "start", "stddev_over_time", "stdvar_over_time", "sum_over_time",
	"tan", "tanh", "time", "timestamp", "vector", "year",
)

// promqlAggregations may be followed by "by (...)" or "without (...)" before
// their parenthesised arguments.
var promqlAggregations = setOf(
	"avg", "bottomk", "count", "count_values", "group", "limit_ratio", "limitk", "max", "min",
	"quantile", "stddev", "stdvar", "sum", "topk",
)

// promqlKeywords are operators and modifiers spelled as words, and the two
// float literals spelled as words. PromQL reads them case-insensitively.
var promqlKeywords = setOf(
	"and", "or", "unless", "atan2", "bool", "offset", "by", "without", "on", "ignoring",
	"group_left", "group_right", "inf", "nan",
)

// labelListKeywords are followed by a parenthesised list of label names (optional
// for group_left and group_right).
var labelListKeywords = setOf("by", "without", "on", "ignoring", "group_left", "group_right")

func setOf(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

// metricNames returns the metric names that a PromQL expression selects, in
// order of appearance. It is a lexer, not a parser: it skips strings, numbers,
// durations, range and subquery brackets, label matchers, label lists after
// by/without/on/ignoring/group_*, Grafana variables and comments; it calls an
// identifier followed by "(" a function, and any other identifier that is not a
// keyword a metric name. Whatever it cannot vouch for is an error: unknown
// functions, selectors without a metric name (including __name__ matchers),
// unterminated strings and unbalanced brackets.
func metricNames(expr string) ([]string, error) {
	l := &lexer{src: expr}
	var names []string
	depth := 0
	lastWasMetric := false
	for {
		l.skipSpaceAndComments()
		if l.done() {
			break
		}
		c := l.peek()
		wasMetric := lastWasMetric
		lastWasMetric = false
		switch {
		case c == '"' || c == '\'' || c == '`':
			if err := l.skipString(); err != nil {
				return nil, err
			}
		case c == '{':
			if !wasMetric {
				return nil, fmt.Errorf("a selector without a metric name at offset %d", l.pos)
			}
			if err := l.skipMatchers(); err != nil {
				return nil, err
			}
		case c == '[':
			if err := l.skipUntil(']'); err != nil {
				return nil, err
			}
		case c == '$':
			if err := l.skipVariable(); err != nil {
				return nil, err
			}
		case isDigit(c) || (c == '.' && isDigit(l.peekAt(1))):
			if err := l.skipNumber(); err != nil {
				return nil, err
			}
		case isIdentStart(c):
			word := l.ident()
			lower := strings.ToLower(word)
			l.skipSpaceAndComments()
			next := l.peek()
			switch {
			case labelListKeywords[lower]:
				if next == '(' {
					if err := l.skipLabelList(); err != nil {
						return nil, err
					}
				}
			case promqlKeywords[lower]:
			case promqlAggregations[word] && (next == '(' || l.nextWordIs("by", "without")):
			case next == '(':
				if !promqlFunctions[word] {
					return nil, fmt.Errorf("unknown function %s", word)
				}
			default:
				names = append(names, word)
				lastWasMetric = true
			}
		case c == '(':
			depth++
			l.pos++
		case c == ')':
			if depth--; depth < 0 {
				return nil, fmt.Errorf("unbalanced ) at offset %d", l.pos)
			}
			l.pos++
		case c == '}' || c == ']':
			return nil, fmt.Errorf("unbalanced %c at offset %d", c, l.pos)
		case strings.IndexByte("+-*/%^=!<>,@", c) >= 0:
			l.pos++
		default:
			return nil, fmt.Errorf("unexpected %q at offset %d", c, l.pos)
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unbalanced parentheses")
	}
	return names, nil
}

// variableMetricNames returns the metrics a Grafana Prometheus variable query
// selects: label_values(selector, label), label_values(label) or
// query_result(expr). Other query kinds (metrics(regex), series) are refused.
func variableMetricNames(query string) ([]string, error) {
	query = strings.TrimSpace(query)
	inner, ok := call(query, "label_values")
	if !ok {
		if inner, ok = call(query, "query_result"); ok {
			return metricNames(inner)
		}
		return nil, fmt.Errorf("unsupported variable query")
	}
	i := strings.LastIndexByte(inner, ',')
	if i < 0 {
		if !isLabelName(strings.TrimSpace(inner)) {
			return nil, fmt.Errorf("label_values(%s): not a label name", inner)
		}
		return nil, nil
	}
	selector, label := inner[:i], strings.TrimSpace(inner[i+1:])
	if !isLabelName(label) {
		return nil, fmt.Errorf("label_values: %q is not a label name", label)
	}
	names, err := metricNames(selector)
	if err != nil {
		return nil, err
	}
	if len(names) != 1 {
		return nil, fmt.Errorf("label_values needs one series selector, got %v", names)
	}
	return names, nil
}

// call returns the argument text of fn(...) if s is exactly such a call.
func call(s, fn string) (string, bool) {
	if !strings.HasPrefix(s, fn+"(") || !strings.HasSuffix(s, ")") {
		return "", false
	}
	return s[len(fn)+1 : len(s)-1], true
}

func isLabelName(s string) bool {
	if s == "" || !isIdentStart(s[0]) || strings.Contains(s, ":") {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isIdentChar(s[i]) {
			return false
		}
	}
	return true
}

type lexer struct {
	src string
	pos int
}

func (l *lexer) done() bool { return l.pos >= len(l.src) }

func (l *lexer) peek() byte { return l.peekAt(0) }

func (l *lexer) peekAt(n int) byte {
	if l.pos+n >= len(l.src) {
		return 0
	}
	return l.src[l.pos+n]
}

func (l *lexer) skipSpaceAndComments() {
	for !l.done() {
		switch l.peek() {
		case ' ', '\t', '\n', '\r':
			l.pos++
		case '#':
			for !l.done() && l.peek() != '\n' {
				l.pos++
			}
		default:
			return
		}
	}
}

func (l *lexer) ident() string {
	start := l.pos
	for !l.done() && isIdentChar(l.peek()) {
		l.pos++
	}
	return l.src[start:l.pos]
}

// nextWordIs reports whether the next identifier is one of words, without consuming it.
func (l *lexer) nextWordIs(words ...string) bool {
	save := l.pos
	defer func() { l.pos = save }()
	if !isIdentStart(l.peek()) {
		return false
	}
	return slices.Contains(words, strings.ToLower(l.ident()))
}

func (l *lexer) skipString() error {
	quote := l.peek()
	start := l.pos
	l.pos++
	for !l.done() {
		c := l.peek()
		l.pos++
		switch {
		case c == '\\' && quote != '`':
			l.pos++
		case c == quote:
			return nil
		}
	}
	return fmt.Errorf("unterminated string at offset %d", start)
}

// skipMatchers skips {label op "value", ...}; a __name__ matcher is refused
// since it would select metrics by a name this lexer does not see.
func (l *lexer) skipMatchers() error {
	start := l.pos
	l.pos++
	for {
		l.skipSpaceAndComments()
		if l.done() {
			return fmt.Errorf("unterminated label matchers at offset %d", start)
		}
		switch c := l.peek(); {
		case c == '}':
			l.pos++
			return nil
		case c == '"' || c == '\'' || c == '`':
			if err := l.skipString(); err != nil {
				return err
			}
		case isIdentStart(c):
			if l.ident() == "__name__" {
				return fmt.Errorf("a __name__ matcher at offset %d", start)
			}
		case strings.IndexByte("=!~,", c) >= 0:
			l.pos++
		default:
			return fmt.Errorf("unexpected %q in label matchers at offset %d", c, l.pos)
		}
	}
}

// skipUntil skips a range or subquery bracket: durations, ':' and Grafana variables.
func (l *lexer) skipUntil(closing byte) error {
	start := l.pos
	l.pos++
	for !l.done() {
		c := l.peek()
		l.pos++
		if c == closing {
			return nil
		}
		if !isIdentChar(c) && strings.IndexByte(":$.{} ", c) < 0 {
			return fmt.Errorf("unexpected %q in brackets at offset %d", c, l.pos-1)
		}
	}
	return fmt.Errorf("unterminated %c at offset %d", l.src[start], start)
}

// skipLabelList skips "(label, label, ...)".
func (l *lexer) skipLabelList() error {
	start := l.pos
	l.pos++
	for !l.done() {
		c := l.peek()
		l.pos++
		if c == ')' {
			return nil
		}
		if !isIdentChar(c) && strings.IndexByte(", \t\n", c) < 0 {
			return fmt.Errorf("unexpected %q in label list at offset %d", c, l.pos-1)
		}
	}
	return fmt.Errorf("unterminated label list at offset %d", start)
}

// skipVariable skips a Grafana variable: $name or ${name} or ${name:format}.
func (l *lexer) skipVariable() error {
	start := l.pos
	l.pos++
	if l.peek() == '{' {
		end := strings.IndexByte(l.src[l.pos:], '}')
		if end < 0 {
			return fmt.Errorf("unterminated variable at offset %d", start)
		}
		l.pos += end + 1
		return nil
	}
	if l.ident() == "" {
		return fmt.Errorf("a lone $ at offset %d", start)
	}
	return nil
}

// skipNumber skips a number or duration: 0.5, 1e-3, 0x1F, 5m, 1h30m. A number
// running into letters that are not a duration unit is an error, so that no
// identifier hides inside one.
func (l *lexer) skipNumber() error {
	start := l.pos
	digits := func(ok func(byte) bool) {
		for !l.done() && ok(l.peek()) {
			l.pos++
		}
	}
	if l.peek() == '0' && (l.peekAt(1) == 'x' || l.peekAt(1) == 'X') {
		l.pos += 2
		digits(func(c byte) bool { return isDigit(c) || strings.IndexByte("abcdefABCDEF", c) >= 0 })
	} else {
		digits(func(c byte) bool { return isDigit(c) || c == '.' })
		if c := l.peek(); (c == 'e' || c == 'E') && (isDigit(l.peekAt(1)) ||
			((l.peekAt(1) == '+' || l.peekAt(1) == '-') && isDigit(l.peekAt(2)))) {
			l.pos += 2
			digits(isDigit)
		}
		// Duration units, as in 5m or 1h30m or 250ms.
		for !l.done() && strings.IndexByte("smhdwy", l.peek()) >= 0 {
			digits(func(c byte) bool { return strings.IndexByte("smhdwy", c) >= 0 })
			digits(isDigit)
		}
	}
	if !l.done() && isIdentChar(l.peek()) {
		return fmt.Errorf("malformed number %q at offset %d", l.src[start:l.pos+1], start)
	}
	return nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || isDigit(c) }
