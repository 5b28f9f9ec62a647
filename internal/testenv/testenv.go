// Package testenv starts the real servers tests run against (S3, the Dex
// identity provider and, in kubeenv, Kubernetes) on 127.0.0.1, runs the
// real OCI clients against a registry's /v2/ API (the distribution-spec
// conformance suite, oras and crane), and holds the fixtures tests share,
// such as a token issuer, crash-test seeds, directory snapshots, a small
// filesystem for full-disk tests, a log buffer, a registry clock tests
// advance, a network namespace of a test's own (InNetworkNamespace), and
// polling and metric helpers.
// The binaries come from `make tools`, which builds them into a
// version-named cache; a test that needs a missing binary fails when
// CI=true and skips with the command to run otherwise.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// VersitygwVersion is the versitygw release the tests run against; keep it
// in step with tools/versitygw/go.mod and the Makefile.
const VersitygwVersion = "v1.8.0"

// ToolsDir is where `make tools` puts binaries: $MODELX_TOOLS_DIR, else
// $XDG_CACHE_HOME/modelx/tools, else ~/.cache/modelx/tools.
func ToolsDir() string {
	if d := os.Getenv("MODELX_TOOLS_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "modelx", "tools")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "modelx", "tools")
}

// BinaryPath is where `make tools` puts a tool's binary.
func BinaryPath(name, version string) string {
	return filepath.Join(ToolsDir(), name+"-"+version, name)
}

// RequireBinary returns the path of a tool binary or ends the test: Fatal
// in CI, Skip elsewhere.
func RequireBinary(t testing.TB, name, version string) string {
	t.Helper()
	p := BinaryPath(name, version)
	if _, err := os.Stat(p); err != nil {
		msg := fmt.Sprintf("%s %s not found at %s: run `make tools` to build it", name, version, p)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// S3Server is a running S3-compatible server.
type S3Server struct {
	// URL is the endpoint, http://127.0.0.1:PORT.
	URL       string
	AccessKey string
	SecretKey string
	Region    string
}

// StartS3 starts versitygw on a fresh temp directory and stops it when the
// test ends. Buckets are made with CreateBucket by the caller.
func StartS3(t testing.TB) *S3Server {
	t.Helper()
	return StartS3On(t, t.TempDir())
}

// StartS3On is StartS3 with the objects stored under dir (a small
// filesystem from SmallFS, say).
func StartS3On(t testing.TB, dir string) *S3Server {
	t.Helper()
	bin := RequireBinary(t, "versitygw", VersitygwVersion)
	srv := &S3Server{AccessKey: "AK" + randomHex(8), SecretKey: randomHex(20), Region: "us-east-1"}
	var lastErr error
	for range 3 { // a port taken between FreePort and listen: try another
		port := FreePort(t)
		srv.URL = "http://127.0.0.1:" + strconv.Itoa(port)
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, bin,
			"--access", srv.AccessKey, "--secret", srv.SecretKey, "--region", srv.Region,
			"--port", "127.0.0.1:"+strconv.Itoa(port), "--health", "/health", "posix", dir)
		logFile, err := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatalf("start versitygw: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		if lastErr = WaitHealthy(context.Background(), srv.URL+"/health", exited); lastErr == nil {
			t.Cleanup(func() {
				cancel()
				<-exited
				logFile.Close()
			})
			return srv
		}
		cancel()
		<-exited
		logFile.Close()
		if b, err := os.ReadFile(logFile.Name()); err == nil {
			lastErr = fmt.Errorf("%w\n%s", lastErr, b)
		}
	}
	t.Fatalf("versitygw did not become healthy: %v", lastErr)
	return nil
}

// WaitHealthy polls url until it answers 200, for at most 30 s; it stops
// early when exited closes (the process died) or ctx ends.
func WaitHealthy(ctx context.Context, url string, exited <-chan struct{}) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("the process exited")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no healthy answer from %s within 30s", url)
}
