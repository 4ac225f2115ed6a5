package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// The refprober role is the reference the manager's cost is measured against:
// a plain Go program with no Kubernetes in it that probes the same URLs on the
// same schedule (each URL every interval, the next probe interval after the
// last one started), with an HTTP client set up as the manager's prober sets
// up its own: HTTP/1.1 keep-alive, one idle connection per host, no TCP
// keep-alive, no compression, redirects not followed, at most 4 KiB of body read.

const refUserAgent = "bench-refprober/1"

func runRefProber(args []string) int {
	fs := flag.NewFlagSet("refprober", flag.ContinueOnError)
	urlsFile := fs.String("urls", "", "File with one URL per line.")
	interval := fs.Duration("interval", 10*time.Second, "Time between the starts of two probes of a URL.")
	timeout := fs.Duration("timeout", 10*time.Second, "Deadline of each probe.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	urls, err := readLines(*urlsFile)
	if err != nil || len(urls) == 0 {
		fmt.Fprintln(os.Stderr, "refprober: need -urls with at least one URL:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	client := &http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{KeepAlive: -1}).DialContext,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     5 * time.Minute,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	// Spread the first probes evenly over one interval.
	start := time.Now()
	for i, u := range urls {
		first := start.Add(*interval * time.Duration(i) / time.Duration(len(urls)))
		go probeLoop(ctx, client, u, first, *interval, *timeout)
	}
	<-ctx.Done()
	return 0
}

func probeLoop(ctx context.Context, client *http.Client, url string, next time.Time, interval, timeout time.Duration) {
	t := time.NewTimer(time.Until(next))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		started := time.Now()
		probeOnce(ctx, client, url, timeout)
		t.Reset(time.Until(started.Add(interval)))
	}
}

func probeOnce(ctx context.Context, client *http.Client, url string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return
	}
	req.Header.Set("User-Agent", refUserAgent)
	resp, err := client.Do(req)
	if err != nil {
		return
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	_ = resp.Body.Close()
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			lines = append(lines, line)
		}
	}
	return lines, sc.Err()
}
