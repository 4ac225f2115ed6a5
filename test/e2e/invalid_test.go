package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// TestKubectlApplyRefusesInvalidManifestsNamingTheField applies each manifest
// under testdata/invalid. Each starts with a comment saying what is wrong and
// one or more "# expect: <text>" lines that the refusal must contain, such as
// the path of the field at fault.
func TestKubectlApplyRefusesInvalidManifestsNamingTheField(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "invalid", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("want at least 10 invalid manifests, found %d", len(files))
	}
	ns := newNamespace(t, "e2e-invalid")

	t.Run("each is refused", func(t *testing.T) {
		for _, file := range files {
			t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
				t.Parallel()
				g := NewWithT(t)
				data, err := os.ReadFile(file)
				g.Expect(err).NotTo(HaveOccurred())
				expects := expectations(string(data))
				g.Expect(expects).NotTo(BeEmpty(), "%s has no # expect: line", file)

				out, err := kubectl("apply", "-n", ns, "-f", file)
				g.Expect(err).To(HaveOccurred(), "kubectl apply accepted %s:\n%s", file, out)
				for _, e := range expects {
					g.Expect(out).To(ContainSubstring(e))
				}
				t.Logf("%s", strings.TrimSpace(out))
			})
		}
	})

	out := mustKubectl(t, "get", "cb", "-n", ns, "-o", "name")
	NewWithT(t).Expect(strings.TrimSpace(out)).To(BeEmpty(), "breakers were created")
}

func expectations(manifest string) []string {
	var expects []string
	for _, line := range strings.Split(manifest, "\n") {
		if e, ok := strings.CutPrefix(line, "# expect: "); ok {
			expects = append(expects, strings.TrimSpace(e))
		}
	}
	return expects
}
