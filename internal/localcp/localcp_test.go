package localcp_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/resilience-dev/breaker-operator/internal/localcp"
)

func TestControlPlaneRestartsAPIServerOnSamePortAndCleansUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	g := NewWithT(t)
	ctx := t.Context()

	cp, err := localcp.Start(ctx, localcp.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = cp.Stop() }()

	out, err := cp.Kubectl(ctx, "get", "namespace", "default", "-o", "name").CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))
	g.Expect(string(out)).To(Equal("namespace/default\n"))

	// A client created before the restart keeps working after it.
	cs, err := kubernetes.NewForConfig(cp.RESTConfig)
	g.Expect(err).NotTo(HaveOccurred())
	url := cp.APIServerURL
	g.Expect(cp.PID(localcp.Etcd)).To(BeNumerically(">", 0))
	g.Expect(cp.PID(localcp.APIServer)).To(BeNumerically(">", 0))
	g.Expect(cp.StopAPIServer()).To(Succeed())
	g.Expect(cp.PID(localcp.APIServer)).To(BeZero())
	_, err = cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
	g.Expect(err).To(HaveOccurred())

	g.Expect(cp.StartAPIServer(ctx)).To(Succeed())
	g.Expect(cp.APIServerURL).To(Equal(url))
	g.Eventually(func() error {
		_, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err
	}, 30*time.Second, 200*time.Millisecond).Should(Succeed())

	dir, kubeconfig := cp.Dir, cp.KubeconfigPath
	g.Expect(cp.Stop()).To(Succeed())
	g.Expect(dir).NotTo(BeADirectory())
	g.Expect(kubeconfig).NotTo(BeAnExistingFile())
	_, err = os.Stat(dir)
	g.Expect(os.IsNotExist(err)).To(BeTrue())
	g.Expect(cp.Stop()).To(Succeed(), "Stop twice")
}

func TestStartRefusesToReplaceAKubeconfigItDidNotWrite(t *testing.T) {
	g := NewWithT(t)
	path := filepath.Join(t.TempDir(), "config")
	foreign := []byte("apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://prod.example:6443\n")
	g.Expect(os.WriteFile(path, foreign, 0o600)).To(Succeed())

	_, err := localcp.Start(t.Context(), localcp.Options{KubeconfigPath: path})
	g.Expect(err).To(MatchError(ContainSubstring("refusing to replace")))
	g.Expect(os.ReadFile(path)).To(Equal(foreign))
}
