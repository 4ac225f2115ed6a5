package ci

import (
	"strings"
	"testing"
)

// recorder is a testing.TB that records how a test ended instead of ending.
type recorder struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, format
}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, format
}

func TestMissingToolFailsUnderCIAndSkipsElsewhere(t *testing.T) {
	for _, tc := range []struct {
		ci           string
		fail, skip   bool
		wantInReason string
	}{
		{ci: "true", fail: true, wantInReason: "CI=true"},
		{ci: "1", fail: true, wantInReason: "CI=true"},
		{ci: "", skip: true, wantInReason: "skipping"},
		{ci: "false", skip: true, wantInReason: "skipping"},
	} {
		t.Setenv("CI", tc.ci)
		r := &recorder{TB: t}
		Tool(r, "no-such-tool-breaker-operator", "the test needs it", "apt-get install nothing")
		if r.failed != tc.fail || r.skipped != tc.skip || !strings.Contains(r.msg, tc.wantInReason) {
			t.Errorf("CI=%q: failed %v, skipped %v (%q); want failed %v, skipped %v", tc.ci, r.failed, r.skipped, r.msg, tc.fail, tc.skip)
		}
	}
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	if p := Tool(r, "go", "", ""); p == "" || r.failed || r.skipped {
		t.Errorf("a tool on PATH: %q, failed %v, skipped %v", p, r.failed, r.skipped)
	}
}
