package kubeenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// logTail is how much of a component's log a failing test prints.
const logTail = 8000

// LogsEnv names the environment variable that keeps the components' logs:
// when set to a directory, each test writes its logs (control plane,
// kube-controller-manager, kube-scheduler, kwok, seldon-operator,
// kserve-manager) into DIR/TEST_NAME/ and leaves them there. Otherwise
// they go to the test's temp directory and only their tails are printed,
// when the test fails.
const LogsEnv = "MODELX_KUBE_LOGS"

// logDir is where a test's component logs go (see LogsEnv).
func logDir(t testing.TB) string {
	t.Helper()
	root := os.Getenv(LogsEnv)
	if root == "" {
		return t.TempDir()
	}
	dir := filepath.Join(root, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("%s: %v", LogsEnv, err)
	}
	return dir
}

// process is one server binary run by a test: its output goes to a log
// file, SIGTERM stops it when the test ends, and the log's tail is printed
// if the test failed.
type process struct {
	name   string
	log    string        // path of the log file
	exited chan struct{} // closed when the process has exited
}

// startProcess starts bin with args; env, if not nil, replaces the
// environment. The log is written in a fresh temp directory.
func startProcess(t testing.TB, name, bin string, args, env []string) *process {
	t.Helper()
	logFile, err := os.Create(filepath.Join(logDir(t), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		logFile.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, log: logFile.Name(), exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		cancel()
		<-p.exited
		logFile.Close()
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", name, tail(p.log, logTail))
		}
	})
	return p
}

// waitLogLine waits until the process logs line, fails the test if it
// exits or timeout passes first.
func (p *process) waitLogLine(t testing.TB, line string, timeout time.Duration) {
	t.Helper()
	if err := waitForLogLine(p.log, line, p.exited, timeout); err != nil {
		t.Fatalf("%s: %v\n%s", p.name, err, tail(p.log, logTail))
	}
}

// Log returns everything the process has logged so far.
func (p *process) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}
