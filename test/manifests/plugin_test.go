package manifests

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"
)

// krewPlugin is what the tests read of plugins/breaker.yaml.
type krewPlugin struct {
	Spec struct {
		Version   string `json:"version"`
		Platforms []struct {
			URI    string `json:"uri"`
			SHA256 string `json:"sha256"`
			Bin    string `json:"bin"`
		} `json:"platforms"`
	} `json:"spec"`
}

func readPlugin(t *testing.T, file string) krewPlugin {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var p krewPlugin
	if err := yaml.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// The committed krew manifest names the release of its spec.version and
// carries real sums, never placeholders.
func TestPluginManifestCarriesRealSums(t *testing.T) {
	g := NewWithT(t)
	p := readPlugin(t, filepath.Join(root(), "plugins", "breaker.yaml"))
	g.Expect(p.Spec.Platforms).To(HaveLen(3))
	for _, pl := range p.Spec.Platforms {
		g.Expect(pl.SHA256).To(MatchRegexp(`^[0-9a-f]{64}$`), pl.URI)
		g.Expect(strings.Trim(pl.SHA256, "0")).NotTo(BeEmpty(), "%s: a placeholder of zeros", pl.URI)
		g.Expect(pl.URI).To(ContainSubstring("/releases/download/" + p.Spec.Version + "/"))
		g.Expect(pl.Bin).To(Equal("kubectl-breaker"))
	}
}

// `make plugin-manifest` (hack/plugin-manifest.sh) rebuilds the archives and
// writes the manifest: the committed one is what it writes, and each sum is
// that of the archive it built, which holds the kubectl-breaker binary.
func TestPluginManifestIsWhatMakePluginManifestWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles kubectl-breaker for three platforms (not in -short mode)")
	}
	g := NewWithT(t)
	dir := t.TempDir()
	manifest := filepath.Join(dir, "breaker.yaml")
	cmd := exec.Command(filepath.Join(root(), "hack", "plugin-manifest.sh"))
	cmd.Env = append(os.Environ(), "PLUGIN_DIR="+dir, "PLUGIN_MANIFEST="+manifest)
	out, err := cmd.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "%s", out)

	written, err := os.ReadFile(manifest)
	g.Expect(err).NotTo(HaveOccurred())
	committed, err := os.ReadFile(filepath.Join(root(), "plugins", "breaker.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(committed)).To(Equal(string(written)), "plugins/breaker.yaml is stale: run make plugin-manifest and commit it")

	for _, pl := range readPlugin(t, manifest).Spec.Platforms {
		archive := filepath.Join(dir, path.Base(pl.URI))
		data, err := os.ReadFile(archive)
		g.Expect(err).NotTo(HaveOccurred())
		sum := sha256.Sum256(data)
		g.Expect(hex.EncodeToString(sum[:])).To(Equal(pl.SHA256), archive)
		g.Expect(archiveFiles(t, archive)).To(Equal([]string{pl.Bin}))
	}
}

func archiveFiles(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	return names
}
