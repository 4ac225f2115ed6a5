package localcp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Process is a child process started by StartProcess. The control plane's own
// components are started this way, and so can be the other programs of a
// local setup (the manager, demo targets), so that none outlives its parent.
type Process struct {
	Name string
	Cmd  *exec.Cmd

	done    chan struct{}
	waitErr error
	stopMu  sync.Mutex
}

// StartProcess starts path with args, writing its stdout and stderr to out
// (nil discards them). The child gets its own process group, so a Ctrl-C at
// the terminal reaches only the parent, which then stops its children in
// order; on Linux the child is also killed if the parent dies without
// cleaning up.
func StartProcess(name, path string, args []string, out io.Writer) (*Process, error) {
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{Name: name, Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Err is the process's exit error (nil for a zero exit status); valid once Exited is closed.
func (p *Process) Err() error {
	<-p.done
	return p.waitErr
}

// Stop sends SIGTERM and waits for the process to exit, sending SIGKILL if it
// is still running after grace; a zero grace kills it at once, like a crash.
// It returns nil if the process exited, whatever its status.
func (p *Process) Stop(grace time.Duration) error {
	p.stopMu.Lock()
	defer p.stopMu.Unlock()
	if !p.Running() {
		return nil
	}
	if grace > 0 {
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			return nil
		case <-time.After(grace):
		}
	}
	_ = p.Cmd.Process.Kill()
	select {
	case <-p.done:
		if grace > 0 {
			return fmt.Errorf("%s did not stop within %s and was killed", p.Name, grace)
		}
		return nil
	case <-time.After(10 * time.Second):
		return errors.New(p.Name + " did not exit after SIGKILL")
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
