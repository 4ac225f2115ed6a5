package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The target role serves every breaker's target from one process. Target i
// listens on its own loopback address (targetAddr), so that connection pooling
// works per target as it does against real, distinct hosts; every request is
// recorded with its arrival time, separately for the manager and for the
// reference prober (told apart by User-Agent).

// Modes of a target.
const (
	modeOK   = "ok"   // answers 200
	modeFail = "fail" // answers 503
	modeHang = "hang" // accepts and reads the request, never answers
)

// managerUAPrefix starts the User-Agent of every manager probe (internal/version.UserAgent).
const managerUAPrefix = "breaker-operator/"

// targetReady is what the target role writes to its ready file once it listens.
type targetReady struct {
	// Control is the host:port of the control endpoint.
	Control string `json:"control"`
	// Port is the port every target listens on, each on its own address.
	Port int `json:"port"`
}

// targetIP is the loopback address of target i: 127.77.0.1, 127.77.0.2, ...
// Linux routes all of 127.0.0.0/8 to the loopback interface, so these need no set-up.
func targetIP(i int) string { return fmt.Sprintf("127.77.%d.%d", i/250, i%250+1) }

// targetURL is the URL a breaker (and the reference prober) probes for target i.
func targetURL(i, port int) string {
	return "http://" + net.JoinHostPort(targetIP(i), strconv.Itoa(port)) + "/b/" + strconv.Itoa(i)
}

type targetServer struct {
	mu   sync.Mutex
	mode []string
	// mgr and ref hold the arrival times (Unix nanoseconds) of each target's probes.
	mgr, ref [][]int64
}

func runTarget(args []string) int {
	fs := flag.NewFlagSet("target", flag.ContinueOnError)
	n := fs.Int("n", 0, "Number of targets in all.")
	from := fs.Int("from", 0, "First target this process serves.")
	to := fs.Int("to", 0, "One past the last target this process serves (0: n).")
	port := fs.Int("port", 0, "Port to listen on (0: any free one on every address).")
	readyFile := fs.String("ready-file", "", "Where to write the control address and port once listening.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *to == 0 {
		*to = *n
	}
	if *n <= 0 || *n > 250*250 || *readyFile == "" || *from < 0 || *from >= *to || *to > *n {
		fmt.Fprintln(os.Stderr, "target: need 0 < -n <= 62500, 0 <= -from < -to <= -n and -ready-file")
		return 2
	}
	s := &targetServer{mode: make([]string, *n), mgr: make([][]int64, *n), ref: make([][]int64, *n)}
	for i := range s.mode {
		s.mode[i] = modeOK
	}
	listeners, listening, err := listenTargets(*from, *to, *port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "target:", err)
		return 1
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: time.Minute}
	for _, l := range listeners {
		go func() { _ = srv.Serve(l) }()
	}
	ctl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "target:", err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /mode", s.setMode)
	mux.HandleFunc("GET /arrivals", s.dump)
	mux.HandleFunc("GET /last", s.last)
	go func() { _ = (&http.Server{Handler: mux, ReadHeaderTimeout: time.Minute}).Serve(ctl) }()

	ready, _ := json.Marshal(targetReady{Control: ctl.Addr().String(), Port: listening})
	tmp := *readyFile + ".tmp"
	if err := os.WriteFile(tmp, ready, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "target:", err)
		return 1
	}
	if err := os.Rename(tmp, *readyFile); err != nil {
		fmt.Fprintln(os.Stderr, "target:", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	return 0
}

// listenTargets listens on one port on the address of every target in
// [from, to): the given port, or one free on all of them (a few ports are
// tried, in case one is taken on some address).
func listenTargets(from, to, port int) ([]net.Listener, int, error) {
	var lastErr error
	for range 5 {
		first, err := net.Listen("tcp", net.JoinHostPort(targetIP(from), strconv.Itoa(port)))
		if err != nil {
			return nil, 0, err
		}
		p := first.Addr().(*net.TCPAddr).Port
		ls := []net.Listener{first}
		for i := from + 1; i < to && err == nil; i++ {
			var l net.Listener
			if l, err = net.Listen("tcp", net.JoinHostPort(targetIP(i), strconv.Itoa(p))); err == nil {
				ls = append(ls, l)
			}
		}
		if err == nil {
			return ls, p, nil
		}
		lastErr = err
		for _, l := range ls {
			_ = l.Close()
		}
		if port != 0 {
			break
		}
	}
	return nil, 0, fmt.Errorf("listening on %d target addresses: %w", to-from, lastErr)
}

func (s *targetServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UnixNano()
	i, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/b/"))
	if err != nil || i < 0 || i >= len(s.mode) {
		http.NotFound(w, r)
		return
	}
	fromManager := strings.HasPrefix(r.Header.Get("User-Agent"), managerUAPrefix)
	s.mu.Lock()
	if fromManager {
		s.mgr[i] = append(s.mgr[i], now)
	} else {
		s.ref[i] = append(s.ref[i], now)
	}
	mode := s.mode[i]
	s.mu.Unlock()
	switch mode {
	case modeFail:
		w.WriteHeader(http.StatusServiceUnavailable)
	case modeHang:
		// Never answer; the prober gives up at its deadline and closes the connection.
		<-r.Context().Done()
	default:
		w.Header().Set("Content-Length", "3")
		_, _ = io.WriteString(w, "ok\n")
	}
}

// setMode sets the mode of the targets listed in the body (a JSON array of
// indices) and answers with the time of the switch, in Unix nanoseconds:
// probes recorded before it got the old mode, probes after it the new one.
func (s *targetServer) setMode(w http.ResponseWriter, r *http.Request) {
	mode := r.URL.Query().Get("mode")
	if mode != modeOK && mode != modeFail && mode != modeHang {
		http.Error(w, "mode must be ok, fail or hang", http.StatusBadRequest)
		return
	}
	var idx []int
	if err := json.NewDecoder(r.Body).Decode(&idx); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	for _, i := range idx {
		if i >= 0 && i < len(s.mode) {
			s.mode[i] = mode
		}
	}
	at := time.Now().UnixNano()
	s.mu.Unlock()
	_, _ = fmt.Fprint(w, at)
}

// dump writes every arrival recorded so far: for each target in order, the
// manager's count and times, then the reference prober's, little-endian.
func (s *targetServer) dump(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	var buf []byte
	for i := range s.mgr {
		for _, times := range [][]int64{s.mgr[i], s.ref[i]} {
			buf = binary.LittleEndian.AppendUint32(buf, uint32(len(times)))
			for _, t := range times {
				buf = binary.LittleEndian.AppendUint64(buf, uint64(t))
			}
		}
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(buf)
}

// last writes, for each target in order, the arrival time of the manager's
// latest probe (0 if none), little-endian.
func (s *targetServer) last(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	buf := make([]byte, 0, 8*len(s.mgr))
	for _, times := range s.mgr {
		t := int64(0)
		if len(times) > 0 {
			t = times[len(times)-1]
		}
		buf = binary.LittleEndian.AppendUint64(buf, uint64(t))
	}
	s.mu.Unlock()
	_, _ = w.Write(buf)
}

// targetClient drives the running target processes from the driver: each
// serves a shard of the targets (a listener and two connections per target
// take descriptors, which a process has only so many of).
type targetClient struct {
	bases []string
	http  *http.Client
}

// targetsPerProcess is a shard's size: 5,000 listeners and 10,000
// connections, within the usual limit of 20,000 open files.
const targetsPerProcess = 5000

func waitTargetReady(file string, within time.Duration, exited <-chan struct{}) (targetReady, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(file)
		if err == nil {
			var r targetReady
			return r, json.Unmarshal(data, &r)
		}
		select {
		case <-exited:
			return targetReady{}, errors.New("the target process exited before it was ready")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return targetReady{}, fmt.Errorf("the target process wrote no %s within %s", filepath.Base(file), within)
}

// setMode switches targets idx to mode and returns when the switch happened
// (the latest of the processes' switches: every probe after it got the new mode).
func (c *targetClient) setMode(mode string, idx []int) (time.Time, error) {
	body, _ := json.Marshal(idx)
	var at time.Time
	for _, base := range c.bases {
		t, err := c.setModeOn(base, mode, body)
		if err != nil {
			return time.Time{}, err
		}
		if t.After(at) {
			at = t
		}
	}
	return at, nil
}

func (c *targetClient) setModeOn(base, mode string, body []byte) (time.Time, error) {
	resp, err := c.http.Post(base+"/mode?mode="+mode, "application/json", strings.NewReader(string(body)))
	if err != nil {
		return time.Time{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return time.Time{}, fmt.Errorf("target: set mode %s: %s: %s", mode, resp.Status, out)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	return time.Unix(0, ns), err
}

// arrivals are the probe arrival times (Unix nanoseconds) per target, in order.
type arrivals struct{ mgr, ref [][]int64 }

// arrivals merges the processes' records: each has times only for its own targets.
func (c *targetClient) arrivals(n int) (arrivals, error) {
	a := arrivals{mgr: make([][]int64, n), ref: make([][]int64, n)}
	for _, base := range c.bases {
		data, err := c.get(base + "/arrivals")
		if err != nil {
			return a, err
		}
		for i := range n {
			for _, dst := range []*[]int64{&a.mgr[i], &a.ref[i]} {
				if len(data) < 4 {
					return a, errors.New("target: short arrivals dump")
				}
				count := int(binary.LittleEndian.Uint32(data))
				data = data[4:]
				if len(data) < 8*count {
					return a, errors.New("target: short arrivals dump")
				}
				for k := range count {
					*dst = append(*dst, int64(binary.LittleEndian.Uint64(data[8*k:])))
				}
				data = data[8*count:]
			}
		}
	}
	return a, nil
}

func (c *targetClient) get(url string) ([]byte, error) {
	resp, err := c.http.Get(url)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("target: %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// lastArrivals returns the arrival time of each target's latest manager probe (zero if none).
func (c *targetClient) lastArrivals() ([]time.Time, error) {
	var out []time.Time
	for _, base := range c.bases {
		data, err := c.get(base + "/last")
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = make([]time.Time, len(data)/8)
		}
		for i := range min(len(out), len(data)/8) {
			if ns := int64(binary.LittleEndian.Uint64(data[8*i:])); ns != 0 && time.Unix(0, ns).After(out[i]) {
				out[i] = time.Unix(0, ns)
			}
		}
	}
	return out, nil
}
