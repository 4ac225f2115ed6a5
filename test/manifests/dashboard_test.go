package manifests

// The Grafana dashboard (config/grafana) is well formed, has the panels the
// monitoring docs describe, and every query parses with Prometheus' own parser
// and returns data from the series the operator exports (promtool).

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/resilience-dev/breaker-operator/internal/metrics"
)

var dashboardFile = filepath.Join(root(), "config", "grafana", "circuitbreaker-dashboard.json")

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
	for _, q := range []string{"0.5", "0.9", "0.99"} {
		g.Expect(series).To(ContainElement(ContainSubstring("histogram_quantile(" + q + ", ")))
	}
}

// grafanaVariable matches $name, ${name} and ${name:format}.
var grafanaVariable = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*(:[A-Za-z]+)?\}?`)

// substituteVariables turns a Grafana query into plain PromQL: the rate
// interval becomes 5m and every other variable (used in regex matchers) ".*".
func substituteVariables(expr string) string {
	expr = strings.ReplaceAll(expr, "$__rate_interval", "5m")
	return grafanaVariable.ReplaceAllString(expr, ".*")
}

// dashboardQueries returns every query of the dashboard, Grafana variables
// substituted, keyed by where it is; a variable's label_values(selector, label)
// yields its selector.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	d := loadDashboard(t)
	out := map[string]string{}
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			out[fmt.Sprintf("panel %q target %s", p.Title, tg.RefID)] = substituteVariables(tg.Expr)
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
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		m := regexp.MustCompile(`^label_values\((.+),\s*[A-Za-z_][A-Za-z0-9_]*\)$`).FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("variable %s: only label_values(selector, label) queries are checked, got %q", v.Name, q.Query)
		}
		out["variable "+v.Name] = substituteVariables(m[1])
	}
	return out
}

// exportedSeries returns input series for promtool: every series that
// internal/metrics exports for one breaker, counters rising and gauges at 1.
func exportedSeries(t *testing.T) []map[string]string {
	t.Helper()
	metrics.SetState("dashboard-test", "cb", "Open", 3)
	metrics.ObserveTransition("dashboard-test", "cb", "Closed", "Open")
	metrics.ObserveProbe("dashboard-test", "cb", false, "timeout", time.Second)
	metrics.SetEnforcement("dashboard-test", "cb", "Fallback", 1)
	metrics.ObserveProbeStart("dashboard-test", "cb", time.Unix(1, 0))
	metrics.SetInterval("dashboard-test", "cb", 10*time.Second)
	metrics.RingMembers.WithLabelValues("dashboard-test-member").Set(3)
	metrics.OwnedBreakers.WithLabelValues("dashboard-test-member").Set(1)
	defer metrics.RingMembers.Reset()
	defer metrics.OwnedBreakers.Reset()
	defer metrics.Forget("dashboard-test", "cb")
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	add := func(name string, labels []*dto.LabelPair, extra, values string) {
		var ls []string
		for _, lp := range labels {
			ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
		}
		if extra != "" {
			ls = append(ls, extra)
		}
		out = append(out, map[string]string{"series": name + "{" + strings.Join(ls, ", ") + "}", "values": values})
	}
	for _, mf := range families {
		if !strings.HasPrefix(mf.GetName(), "circuitbreaker_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM:
				for _, b := range m.GetHistogram().GetBucket() {
					add(mf.GetName()+"_bucket", m.GetLabel(), fmt.Sprintf("le=%q", fmt.Sprint(b.GetUpperBound())), "0+1x30")
				}
				add(mf.GetName()+"_bucket", m.GetLabel(), `le="+Inf"`, "0+1x30")
				add(mf.GetName()+"_sum", m.GetLabel(), "", "0+1x30")
				add(mf.GetName()+"_count", m.GetLabel(), "", "0+1x30")
			case dto.MetricType_COUNTER:
				add(mf.GetName(), m.GetLabel(), "", "0+1x30")
			default:
				add(mf.GetName(), m.GetLabel(), "", "1x30")
			}
		}
	}
	return out
}

// TestDashboardQueriesParseAndReturnTheOperatorsSeries writes every dashboard
// query into a rules file, checks it with `promtool check rules` (Prometheus'
// own parser), and evaluates each one over the series internal/metrics
// exports with `promtool test rules`: a query that names a metric or label
// value the operator does not export returns nothing and fails. A trailing
// "or vector(0)" (which always returns something) is left out.
func TestDashboardQueriesParseAndReturnTheOperatorsSeries(t *testing.T) {
	promtool := promtoolPath(t)
	queries := dashboardQueries(t)
	g := NewWithT(t)
	g.Expect(queries).NotTo(BeEmpty())

	var rules, tests []map[string]any
	for _, where := range slices.Sorted(maps.Keys(queries)) {
		expr := strings.TrimSuffix(strings.TrimSpace(queries[where]), " or vector(0)")
		alert := fmt.Sprintf("DashboardQuery%d", len(rules))
		rules = append(rules, map[string]any{
			"alert": alert, "expr": "count(\n" + expr + "\n) > 0",
			"annotations": map[string]string{"where": where},
		})
		tests = append(tests, map[string]any{
			"eval_time": "20m", "alertname": alert,
			"exp_alerts": []map[string]any{{"exp_labels": map[string]string{}, "exp_annotations": map[string]string{"where": where}}},
		})
	}
	dir := t.TempDir()
	writeYAML(t, filepath.Join(dir, "rules.yaml"), map[string]any{"groups": []map[string]any{{"name": "dashboard", "rules": rules}}})
	writeYAML(t, filepath.Join(dir, "dashboard_test.yaml"), map[string]any{
		"rule_files": []string{"rules.yaml"}, "evaluation_interval": "1m",
		"tests": []map[string]any{{"interval": "1m", "input_series": exportedSeries(t), "alert_rule_test": tests}},
	})
	runPromtool(t, promtool, dir, "check", "rules", "rules.yaml")
	runPromtool(t, promtool, dir, "test", "rules", "dashboard_test.yaml")
}

// The check above fails for what it should: a misspelled metric, a label
// value the operator never exports, and a syntax error.
func TestDashboardCheckRejectsBadQueries(t *testing.T) {
	promtool := promtoolPath(t)
	series := exportedSeries(t)
	for name, expr := range map[string]string{
		"unknown metric":      `sum(rate(circuitbreaker_transition_total[5m]))`,
		"unknown label value": `sum(circuitbreaker_state{state="open"})`,
		"syntax error":        `sum(rate(circuitbreaker_transitions_total[5m])`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeYAML(t, filepath.Join(dir, "rules.yaml"), map[string]any{"groups": []map[string]any{{"name": "d", "rules": []map[string]any{
				{"alert": "Q", "expr": "count(" + expr + ") > 0"}}}}})
			writeYAML(t, filepath.Join(dir, "t.yaml"), map[string]any{
				"rule_files": []string{"rules.yaml"}, "evaluation_interval": "1m",
				"tests": []map[string]any{{"interval": "1m", "input_series": series, "alert_rule_test": []map[string]any{
					{"eval_time": "20m", "alertname": "Q", "exp_alerts": []map[string]any{{"exp_labels": map[string]string{}}}}}}},
			})
			out, err := exec.Command(promtool, "test", "rules", filepath.Join(dir, "t.yaml")).CombinedOutput()
			if err == nil {
				t.Fatalf("promtool accepted %q:\n%s", expr, out)
			}
		})
	}
}
