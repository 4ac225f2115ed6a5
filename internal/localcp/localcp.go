// Package localcp runs a local Kubernetes control plane for the demo, the e2e
// tests and the benchmark: etcd and kube-apiserver from the envtest binaries,
// listening on 127.0.0.1, with their data, certificates and logs in one
// directory, and a kubeconfig for an admin user (system:masters).
//
// The API server can be stopped and started again on the same port with the
// same certificates, which lets tests cut the API server off from clients that
// keep running.
//
// Every process runs in its own process group, so that a Ctrl-C at the
// terminal reaches only the program, which then stops them in order; on Linux
// they are also killed when the program dies without cleaning up. StartProcess
// starts other programs (the manager, demo targets) the same way.
package localcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// K8sVersion is the version of the envtest binaries looked for by default.
const K8sVersion = "1.37.2"

// The components, as named by their binaries, PID and LogPath.
const (
	Etcd      = "etcd"
	APIServer = "kube-apiserver"
)

// Options configure Start. The zero value is usable.
type Options struct {
	// AssetsDir holds the etcd, kube-apiserver and kubectl binaries. Defaults to
	// $KUBEBUILDER_ASSETS, else DefaultAssetsDir().
	AssetsDir string
	// Dir holds the control plane's data, certificates and logs (etcd.log,
	// kube-apiserver.log). Defaults to a new temporary directory; Stop removes
	// it only when Start created it.
	Dir string
	// KubeconfigPath is where the admin kubeconfig is written. Defaults to
	// kubeconfig in Dir. Stop removes the file: it is useless afterwards. An
	// existing file is replaced only if it is a kubeconfig this package wrote.
	KubeconfigPath string
	// StartTimeout bounds how long each component may take to become ready.
	// Defaults to 90s, enough for a loaded 2-core machine.
	StartTimeout time.Duration
}

// ControlPlane is a running local control plane.
type ControlPlane struct {
	// KubeconfigPath is the admin kubeconfig file.
	KubeconfigPath string
	// RESTConfig is the admin client configuration.
	RESTConfig *rest.Config
	// KubectlPath is the kubectl binary from the assets directory.
	KubectlPath string
	// Dir holds the data, certificates and logs.
	Dir string
	// APIServerURL is https://127.0.0.1:<port>; it stays the same across restarts.
	APIServerURL string

	assets        string
	ownDir        bool
	startTimeout  time.Duration
	apiServerArgs []string
	httpClient    *http.Client

	mu        sync.Mutex
	etcd      *Process
	apiServer *Process
	stopped   bool
}

// DefaultAssetsDir is where hack/envtest-assets.sh (and setup-envtest) put
// the binaries for K8sVersion.
func DefaultAssetsDir() string {
	data := os.Getenv("XDG_DATA_HOME")
	if data == "" {
		home, _ := os.UserHomeDir()
		data = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(data, "kubebuilder-envtest", "k8s", K8sVersion+"-"+runtime.GOOS+"-"+runtime.GOARCH)
}

// AssetsDir returns dir if set, else $KUBEBUILDER_ASSETS, else DefaultAssetsDir().
func AssetsDir(dir string) string {
	if dir != "" {
		return dir
	}
	if env := os.Getenv("KUBEBUILDER_ASSETS"); env != "" {
		return env
	}
	return DefaultAssetsDir()
}

// Start brings up etcd and kube-apiserver and returns once the API server is
// ready and the default namespace exists. On error nothing is left running.
func Start(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	cp := &ControlPlane{assets: AssetsDir(opts.AssetsDir), startTimeout: opts.StartTimeout}
	if cp.startTimeout == 0 {
		cp.startTimeout = 90 * time.Second
	}
	for _, bin := range []string{Etcd, APIServer, "kubectl"} {
		if _, err := os.Stat(filepath.Join(cp.assets, bin)); err != nil {
			return nil, fmt.Errorf("%s not found in %s (run `make envtest-assets` or set KUBEBUILDER_ASSETS): %w", bin, cp.assets, err)
		}
	}
	cp.KubectlPath = filepath.Join(cp.assets, "kubectl")
	if opts.KubeconfigPath != "" {
		if err := checkReplaceable(opts.KubeconfigPath); err != nil {
			return nil, err
		}
	}

	cp.Dir = opts.Dir
	if cp.Dir == "" {
		if cp.Dir, err = os.MkdirTemp("", "localcp-"); err != nil {
			return nil, err
		}
		cp.ownDir = true
	} else if err := os.MkdirAll(cp.Dir, 0o700); err != nil {
		return nil, err
	}
	cp.KubeconfigPath = opts.KubeconfigPath
	if cp.KubeconfigPath == "" {
		cp.KubeconfigPath = filepath.Join(cp.Dir, "kubeconfig")
	}
	defer func() {
		if err != nil {
			_ = cp.Stop()
		}
	}()

	certs, err := writeCerts(cp.Dir)
	if err != nil {
		return nil, err
	}
	etcdURL, err := cp.startEtcd(ctx)
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cp.APIServerURL = "https://" + hostPort(port)
	cp.apiServerArgs = apiServerArgs(cp.Dir, port, etcdURL, certs)
	cp.RESTConfig = &rest.Config{
		Host:            cp.APIServerURL,
		TLSClientConfig: rest.TLSClientConfig{CAData: certs.caPEM, CertData: certs.adminCertPEM, KeyData: certs.adminKeyPEM},
		// A local API server for tests and demos: no client-side throttling.
		QPS: 1000, Burst: 2000,
	}
	if cp.httpClient, err = adminHTTPClient(cp.RESTConfig); err != nil {
		return nil, err
	}
	if err := writeKubeconfig(cp.KubeconfigPath, cp.APIServerURL, certs); err != nil {
		return nil, err
	}
	if err := cp.StartAPIServer(ctx); err != nil {
		return nil, err
	}
	// The API server creates the default namespace shortly after it is ready.
	if err := cp.waitFor(ctx, nil, "the default namespace", cp.APIServerURL+"/api/v1/namespaces/default"); err != nil {
		return nil, err
	}
	return cp, nil
}

func (cp *ControlPlane) startEtcd(ctx context.Context) (string, error) {
	clientPort, err := FreePort()
	if err != nil {
		return "", err
	}
	peerPort, err := FreePort()
	if err != nil {
		return "", err
	}
	url := "http://" + hostPort(clientPort)
	args := []string{
		"--data-dir=" + filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls=" + url,
		"--advertise-client-urls=" + url,
		"--listen-peer-urls=http://" + hostPort(peerPort),
		"--initial-advertise-peer-urls=http://" + hostPort(peerPort),
		"--initial-cluster=default=http://" + hostPort(peerPort),
		// Throw-away data: durability only costs time.
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}
	p, err := cp.start(Etcd, args)
	if err != nil {
		return "", err
	}
	cp.mu.Lock()
	cp.etcd = p
	cp.mu.Unlock()
	return url, cp.waitFor(ctx, p, Etcd, url+"/health")
}

func apiServerArgs(dir string, port int, etcdURL string, c certFiles) []string {
	return []string{
		"--advertise-address=127.0.0.1",
		// The kubernetes Service's endpoints may not be a loopback address, and
		// nothing here needs them.
		"--endpoint-reconciler-type=none",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + dir,
		"--tls-cert-file=" + c.servingCert,
		"--tls-private-key-file=" + c.servingKey,
		"--client-ca-file=" + c.caCert,
		"--etcd-servers=" + etcdURL,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--service-account-issuer=https://" + hostPort(port),
		"--service-account-key-file=" + c.saKey,
		"--service-account-signing-key-file=" + c.saKey,
		"--authorization-mode=RBAC",
		// There is no controller-manager to create the default ServiceAccount.
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		// Without it, open watches hold a SIGTERM'd API server up until it is killed.
		"--shutdown-watch-termination-grace-period=2s",
	}
}

// StartAPIServer starts kube-apiserver (again) on its port and waits until it is ready.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	cp.mu.Lock()
	if cp.stopped {
		cp.mu.Unlock()
		return errors.New("control plane is stopped")
	}
	if cp.apiServer != nil {
		select {
		case <-cp.apiServer.Exited():
		default:
			cp.mu.Unlock()
			return errors.New("kube-apiserver is already running")
		}
	}
	cp.mu.Unlock()
	p, err := cp.start(APIServer, cp.apiServerArgs)
	if err != nil {
		return err
	}
	cp.mu.Lock()
	cp.apiServer = p
	cp.mu.Unlock()
	return cp.waitFor(ctx, p, APIServer, cp.APIServerURL+"/readyz")
}

// StopAPIServer stops kube-apiserver (SIGTERM, then SIGKILL after 30s) and
// waits for it to exit. etcd keeps running, so StartAPIServer brings back the
// same data on the same address.
func (cp *ControlPlane) StopAPIServer() error {
	cp.mu.Lock()
	p := cp.apiServer
	cp.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Stop(30 * time.Second)
}

// Stop stops kube-apiserver and etcd, and removes the kubeconfig and, if Start
// created it, the directory. It may be called more than once.
func (cp *ControlPlane) Stop() error {
	cp.mu.Lock()
	cp.stopped = true
	apiServer, etcd := cp.apiServer, cp.etcd
	cp.apiServer, cp.etcd = nil, nil
	cp.mu.Unlock()

	var errs []error
	if apiServer != nil {
		errs = append(errs, apiServer.Stop(30*time.Second))
	}
	if etcd != nil {
		errs = append(errs, etcd.Stop(15*time.Second))
	}
	if cp.KubeconfigPath != "" {
		if err := os.Remove(cp.KubeconfigPath); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	if cp.ownDir && cp.Dir != "" {
		errs = append(errs, os.RemoveAll(cp.Dir))
	}
	return errors.Join(errs...)
}

// Kubectl returns a kubectl command for this control plane: the assets'
// kubectl with KubectlArgs(args...).
func (cp *ControlPlane) Kubectl(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, cp.KubectlPath, cp.KubectlArgs(args...)...)
}

// KubectlArgs prepends to args the flags that point kubectl at this control
// plane, with its discovery cache in Dir rather than in ~/.kube.
func (cp *ControlPlane) KubectlArgs(args ...string) []string {
	return append([]string{"--kubeconfig", cp.KubeconfigPath, "--cache-dir", filepath.Join(cp.Dir, "kubectl-cache")}, args...)
}

// PID is the process id of a component, Etcd or APIServer, or 0 if it is not
// running; for measuring what it costs.
func (cp *ControlPlane) PID(component string) int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	p := map[string]*Process{Etcd: cp.etcd, APIServer: cp.apiServer}[component]
	if p == nil || !p.Running() {
		return 0
	}
	return p.Pid()
}

// LogPath is the log file of a component, Etcd or APIServer.
func (cp *ControlPlane) LogPath(component string) string {
	return filepath.Join(cp.Dir, component+".log")
}

func (cp *ControlPlane) start(name string, args []string) (*Process, error) {
	log, err := os.OpenFile(cp.LogPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	p, err := StartProcess(name, filepath.Join(cp.assets, name), args, log)
	// The child holds its own descriptor.
	_ = log.Close()
	return p, err
}

// waitFor polls url until it answers 200. It gives up when p exits, ctx ends or
// the start timeout passes, and then reports the end of p's log.
func (cp *ControlPlane) waitFor(ctx context.Context, p *Process, what, url string) error {
	ctx, cancel := context.WithTimeout(ctx, cp.startTimeout)
	defer cancel()
	var exited <-chan struct{}
	if p != nil {
		exited = p.Exited()
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if cp.ok(ctx, url) {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited before it was ready (%v)%s", what, p.Err(), cp.logTail(p.Name))
		case <-ctx.Done():
			err := fmt.Errorf("%s not ready after %s: %w", what, cp.startTimeout, ctx.Err())
			if p != nil {
				err = fmt.Errorf("%w%s", err, cp.logTail(p.Name))
			}
			return err
		case <-tick.C:
		}
	}
}

func (cp *ControlPlane) ok(ctx context.Context, url string) bool {
	client := cp.httpClient
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// logTail is "; end of its log:" and the end of a component's log, or nothing
// for a process whose log is kept elsewhere (the manager's).
func (cp *ControlPlane) logTail(name string) string {
	data, err := os.ReadFile(cp.LogPath(name))
	if err != nil || len(data) == 0 {
		return ""
	}
	const max = 2000
	if len(data) > max {
		data = data[len(data)-max:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	return "; end of its log:\n" + string(data)
}

func adminHTTPClient(cfg *rest.Config) (*http.Client, error) {
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true}, Timeout: 5 * time.Second}, nil
}

// kubeconfigName names the cluster, user and context of the kubeconfig.
const kubeconfigName = "localcp"

// checkReplaceable refuses to overwrite (and later remove) a kubeconfig that
// is not one of ours, such as ~/.kube/config given by mistake. A left-over of
// an earlier run that was killed is fine.
func checkReplaceable(path string) error {
	cfg, err := clientcmd.LoadFromFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil || cfg.Clusters[kubeconfigName] == nil || len(cfg.Clusters) != 1 {
		return fmt.Errorf("refusing to replace %s: it is not a kubeconfig written by a local control plane", path)
	}
	return nil
}

func writeKubeconfig(path, server string, c certFiles) error {
	const name = kubeconfigName
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: c.caPEM}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: c.adminCertPEM, ClientKeyData: c.adminKeyPEM}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: "default"}
	cfg.CurrentContext = name
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return clientcmd.WriteToFile(*cfg, path)
}
