package testenv

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netnsEnv marks the child process InNetworkNamespace starts; its value is
// the name of the test the child runs.
const netnsEnv = "MODELX_NETNS_TEST"

// InNetworkNamespace runs the calling test in a network namespace of its
// own, where the loopback interface is the only one: a server that listens
// on every interface (KServe's webhook server, say) is then reachable from
// no other process on the machine, and its fixed port is free. Call it
// first thing in a top-level test, and return when it says so:
//
//	func TestX(t *testing.T) {
//		if testenv.InNetworkNamespace(t, prefetch) {
//			return
//		}
//		// ... runs in the namespace
//	}
//
// In the test process (the parent) it calls each prepare function, then
// re-runs exactly this test in a child process of the test binary started
// in a new network namespace (as root; otherwise in a new user namespace
// too, where the caller's uid is root), and returns true. The child's
// output goes to the test's output; the test fails if the child fails,
// and is skipped if the child skipped it. In the child it brings up lo and
// returns false: the test goes on there, with its subtests as -test.run
// and -test.skip select them.
//
// Nothing outside the machine is reachable in the namespace: the prepare
// functions, which run in the parent only, must fetch into the caches
// whatever the test needs from the network (Go modules, say). The child
// has the parent's environment with GOPROXY=off, so Go commands there read
// the module cache only and fail at once on a miss.
//
// When no namespace can be made the test fails when CI=true and is skipped
// otherwise, with the reason.
func InNetworkNamespace(t *testing.T, prepare ...func(testing.TB)) (parent bool) {
	t.Helper()
	if strings.Contains(t.Name(), "/") {
		t.Fatalf("InNetworkNamespace in subtest %s: call it first thing in a top-level test", t.Name())
	}
	switch os.Getenv(netnsEnv) {
	case "":
	case t.Name():
		enterNetworkNamespace(t)
		return false
	default:
		t.Fatalf("InNetworkNamespace in %s, inside the namespace of %s: call it first thing in a top-level test", t.Name(), os.Getenv(netnsEnv))
	}
	for _, p := range prepare {
		p(t)
	}
	runInNetworkNamespace(t)
	return true
}

// enterNetworkNamespace readies the child's namespace for the test: lo up,
// and no other interface (else the namespace is not the child's own).
func enterNetworkNamespace(t *testing.T) {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatalf("network namespace: list interfaces: %v", err)
	}
	for _, i := range ifaces {
		if i.Name != "lo" {
			t.Fatalf("network namespace: interface %s is there: the test is not in a namespace of its own", i.Name)
		}
	}
	if err := loopbackUp(); err != nil {
		unavailable(t, fmt.Sprintf("network namespace: bring up lo: %v (needs CAP_NET_ADMIN in the namespace)", err))
	}
}

// loopbackUp sets the IFF_UP flag of lo, as `ip link set lo up` does. A new
// network namespace has lo with 127.0.0.1/8 and ::1, down.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS: %w", err)
	}
	return nil
}

// runInNetworkNamespace runs the test in a child process in a new network
// namespace and ends the test as the child's run of it ended.
func runInNetworkNamespace(t *testing.T) {
	t.Helper()
	var out bytes.Buffer
	w := io.MultiWriter(t.Output(), &out)
	// The child dies with the thread that started it (Pdeathsig): keep
	// this goroutine on that thread until the child has exited.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var startErrs []error
	for _, attrs := range namespaceAttrs() {
		cmd := exec.Command(os.Args[0], childArgs(t)...)
		cmd.Env = append(os.Environ(), netnsEnv+"="+t.Name(), "GOPROXY=off")
		cmd.Stdout, cmd.Stderr = w, w
		cmd.SysProcAttr = attrs.sys
		if err := cmd.Start(); err != nil {
			startErrs = append(startErrs, fmt.Errorf("%s: %w", attrs.what, err))
			continue
		}
		waitErr := cmd.Wait()
		endAsChild(t, waitErr, out.Bytes())
		return
	}
	unavailable(t, fmt.Sprintf("no network namespace for %s: %v (run the tests as root, or allow unprivileged user namespaces)",
		t.Name(), errors.Join(startErrs...)))
}

// namespaceAttr is one way to start the child in a new network namespace.
type namespaceAttr struct {
	what string
	sys  *syscall.SysProcAttr
}

// namespaceAttrs are the ways to try, in order: a plain new network
// namespace (needs CAP_SYS_ADMIN), then one inside a new user namespace
// whose root is the caller.
func namespaceAttrs() []namespaceAttr {
	var attrs []namespaceAttr
	if os.Geteuid() == 0 {
		attrs = append(attrs, namespaceAttr{"clone(CLONE_NEWNET)", &syscall.SysProcAttr{
			Cloneflags: syscall.CLONE_NEWNET,
			Pdeathsig:  syscall.SIGKILL,
		}})
	}
	return append(attrs, namespaceAttr{"clone(CLONE_NEWUSER|CLONE_NEWNET)", &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		GidMappingsEnableSetgroups: false,
		Pdeathsig:                  syscall.SIGKILL,
	}})
}

// childArgs are the test binary's flags for the child: run this test alone
// (and the subtests the parent's -test.run selects), verbosely (so that its
// skip can be told from its pass), with the parent's -test.short and
// -test.skip, and a timeout that ends the child before the parent's.
func childArgs(t *testing.T) []string {
	args := []string{"-test.run=" + childRunPattern(t.Name(), flagValue("test.run")), "-test.v=true", "-test.count=1"}
	for _, name := range []string{"test.short", "test.skip"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != f.DefValue {
			args = append(args, "-"+name+"="+f.Value.String())
		}
	}
	if deadline, ok := t.Deadline(); ok {
		left := time.Until(deadline)
		args = append(args, "-test.timeout="+(left-min(left/10, 30*time.Second)).String())
	}
	return args
}

// flagValue is the value of a flag of the test binary, "" if it has none.
func flagValue(name string) string {
	if f := flag.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// childRunPattern is a -test.run pattern that selects the top-level test
// name alone and, below it, the subtests that run (the parent's pattern)
// selects: its first element is replaced by ^name$.
func childRunPattern(name, run string) string {
	pattern := "^" + regexp.QuoteMeta(name) + "$"
	if i := firstSlash(run); i >= 0 {
		pattern += run[i:]
	}
	return pattern
}

// firstSlash is the index of the first '/' of a -test.run pattern that
// separates two levels (as the testing package splits it: not inside
// brackets or parentheses, not escaped), or -1.
func firstSlash(pattern string) int {
	depth := 0
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case '\\':
			i++
		case '[', '(':
			depth++
		case ']', ')':
			depth--
		case '/':
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// endAsChild ends the test as the child's run of it ended: failed (with
// the output, which is already in the test's output), skipped (with the
// child's reason), or passed; a child that ran no such test fails it.
func endAsChild(t *testing.T, waitErr error, out []byte) {
	t.Helper()
	if waitErr != nil {
		t.Fatalf("%s failed in its network namespace (%v); its output is above", t.Name(), waitErr)
	}
	if reason, skipped := childSkip(t.Name(), out); skipped {
		t.Skipf("skipped in its network namespace: %s", reason)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+t.Name()+" (")) {
		t.Fatalf("%s did not run in its network namespace; the child's output is above", t.Name())
	}
}

// childSkip reports whether the verbose output of a test binary says the
// top-level test name was skipped, and the lines it logged just before.
func childSkip(name string, out []byte) (reason string, skipped bool) {
	lines := strings.Split(string(out), "\n")
	for i, line := range lines {
		if !strings.HasPrefix(line, "--- SKIP: "+name+" (") {
			continue
		}
		j := i
		for j > 0 && strings.HasPrefix(lines[j-1], "    ") {
			j--
		}
		var logged []string
		for _, l := range lines[j:i] {
			logged = append(logged, strings.TrimSpace(l))
		}
		return strings.Join(logged, "; "), true
	}
	return "", false
}

// unavailable ends a test that cannot have what it needs: Fatal in CI
// (CI=true), Skip elsewhere.
func unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
