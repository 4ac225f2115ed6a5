package manifests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// The manager's main package is cmd/manager (the design card's layout): cmd/
// itself holds no Go package, and no build, script, test or doc builds ./cmd
// or names cmd/main.go, except the development guide's note on kubebuilder.
func TestManagerMainPackageLivesInCmdManager(t *testing.T) {
	g := NewWithT(t)
	main, err := os.ReadFile(filepath.Join(root(), "cmd", "manager", "main.go"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(main)).To(MatchRegexp(`(?m)^package main$`))
	g.Expect(string(main)).To(ContainSubstring("+kubebuilder:scaffold:imports"))
	loose, err := filepath.Glob(filepath.Join(root(), "cmd", "*.go"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(loose).To(BeEmpty(), "Go files directly in cmd/")

	out, err := exec.Command("git", "-C", root(), "ls-files").Output()
	g.Expect(err).NotTo(HaveOccurred())
	oldPath := regexp.MustCompile(`\./cmd(["'\s)]|$)|cmd/` + `main\.go`)
	var found []string
	for _, f := range strings.Fields(string(out)) {
		if f == "docs/development.md" || f == "test/manifests/layout_test.go" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(root(), f))
		if err != nil {
			continue // deleted in the working tree
		}
		for _, line := range strings.Split(string(data), "\n") {
			if oldPath.MatchString(line) {
				found = append(found, f+":"+strings.TrimSpace(line))
			}
		}
	}
	g.Expect(found).To(BeEmpty())
}
