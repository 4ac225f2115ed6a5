// Package testnet has the loopback servers that tests of several packages
// need: a listener that holds every connection it accepts (and never answers,
// or answers as a test says), and a port where nothing listens. Only tests
// import it.
package testnet

import (
	"net"
	"sync"
	"testing"
)

// Hold listens on loopback and accepts every connection until the test ends;
// handle, if not nil, gets each connection in its own goroutine. Connections
// stay open until the test ends, whatever handle does, and are closed then.
func Hold(t testing.TB, handle func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			if handle != nil {
				go handle(c)
			}
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln
}

// Hanging accepts connections on loopback and never answers.
func Hanging(t testing.TB) net.Listener {
	t.Helper()
	return Hold(t, nil)
}

// ClosedPort returns a loopback address where nothing listens.
func ClosedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}
