package testenv

import (
	"net"
	"os"
	"testing"
)

// TestInNetworkNamespace runs in a namespace of its own: lo is its only
// interface, is up, and carries traffic; a listener on every interface
// there is reachable on 127.0.0.1. The prepare function runs in the
// parent only.
func TestInNetworkNamespace(t *testing.T) {
	prepared := false
	if InNetworkNamespace(t, func(testing.TB) { prepared = true }) {
		if !prepared {
			t.Error("the prepare function did not run in the parent")
		}
		return
	}
	if prepared {
		t.Error("the prepare function ran in the child")
	}
	if os.Getenv("GOPROXY") != "off" {
		t.Errorf("GOPROXY=%q in the namespace, want off", os.Getenv("GOPROXY"))
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(ifaces) != 1 || ifaces[0].Name != "lo" || ifaces[0].Flags&net.FlagUp == 0 {
		t.Fatalf("interfaces %+v, want lo alone, up", ifaces)
	}
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			_, _ = c.Write([]byte("hello"))
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", portOf(t, l)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 5)
	if _, err := c.Read(buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v", buf, err)
	}
	t.Run("subtest", func(t *testing.T) {
		if os.Getenv(netnsEnv) != "TestInNetworkNamespace" {
			t.Errorf("subtest not in the child")
		}
	})
}

func portOf(t *testing.T, l net.Listener) string {
	t.Helper()
	_, port, err := net.SplitHostPort(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func TestChildRunPattern(t *testing.T) {
	for _, c := range []struct{ run, want string }{
		{"", "^TestX$"},
		{"KServe|ToolVersions", "^TestX$"},
		{"TestX/refused", "^TestX$/refused"},
		{"Test(X/Y)/sub", "^TestX$/sub"},
		{"Test[/]X/a/b", "^TestX$/a/b"},
	} {
		if got := childRunPattern("TestX", c.run); got != c.want {
			t.Errorf("childRunPattern(TestX, %q) = %q, want %q", c.run, got, c.want)
		}
	}
}

func TestChildSkip(t *testing.T) {
	out := "=== RUN   TestX\n    x_test.go:10: no binary\n    run make tools\n--- SKIP: TestX (0.00s)\nPASS\n"
	reason, skipped := childSkip("TestX", []byte(out))
	if !skipped || reason != "x_test.go:10: no binary; run make tools" {
		t.Errorf("childSkip = %q, %v", reason, skipped)
	}
	if _, skipped := childSkip("TestX", []byte("--- SKIP: TestXY (0.00s)\n--- PASS: TestX (0.00s)\n")); skipped {
		t.Error("a skip of TestXY counted for TestX")
	}
}
