// Package ci decides what a test does when the machine lacks a tool it needs:
// under CI=true (what .ci/run and CI services set) the test fails, so that a
// green run proves what it claims; elsewhere it skips and says why.
package ci

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// Enabled reports whether the tests run under CI (CI=true).
func Enabled() bool {
	on, _ := strconv.ParseBool(os.Getenv("CI"))
	return on
}

// Tool returns the path of the named program on PATH. When it is missing the
// test fails under CI and skips elsewhere, with why it is needed and how to
// install it.
func Tool(t testing.TB, name, why, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if Enabled() {
		t.Fatalf("CI=true: %s not found on PATH, and %s (%s)", name, why, install)
		return ""
	}
	t.Skipf("skipping: %s not found on PATH, and %s (%s; under CI=true this fails)", name, why, install)
	return ""
}
