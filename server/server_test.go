package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/server"
)

// selfSigned writes a certificate for 127.0.0.1 and returns its files and pool.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "modelxd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// runServer starts server.Run and returns its base URL and a stop func
// that cancels it and returns Run's error.
func runServer(t *testing.T, cfg server.Config, scheme string) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() { errc <- server.Run(ctx, cfg, nil, func(a net.Addr) { addrc <- a }) }()
	select {
	case a := <-addrc:
		return scheme + "://" + a.String(), func() error { cancel(); return <-errc }
	case err := <-errc:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not start listening")
	}
	return "", nil
}

func TestRunTLSAndShutdown(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	url, stop := runServer(t, server.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), TLSCertFile: certFile, TLSKeyFile: keyFile}, "https")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz over TLS: %d", resp.StatusCode)
	}
	if err := stop(); err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}
}

func TestRunScheduledGC(t *testing.T) {
	cfg := server.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), GCInterval: 50 * time.Millisecond,
		Options: registry.Options{GCGracePeriod: time.Nanosecond}}
	url, stop := runServer(t, cfg, "http")
	defer stop()
	data := []byte("orphan blob")
	blobURL := url + "/lib/m/blobs/" + string(digest.FromBytes(data))
	req, _ := http.NewRequest(http.MethodPut, blobURL, bytes.NewReader(data))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Head(blobURL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return
		}
	}
	t.Fatal("scheduled garbage collection never removed the unreferenced blob")
}

// TestShutdownDrainsUploads: an upload in flight when shutdown starts is
// finished and stored before Run returns; new connections are refused.
func TestShutdownDrainsUploads(t *testing.T) {
	dataDir := t.TempDir()
	url, stop := runServer(t, server.Config{Listen: "127.0.0.1:0", DataDir: dataDir, ShutdownTimeout: 30 * time.Second}, "http")
	data := bytes.Repeat([]byte("in flight "), 100_000)
	d := digest.FromBytes(data)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPut, url+"/drain/model/blobs/"+string(d), pr)
	req.ContentLength = int64(len(data))
	answer := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answer <- 0
			return
		}
		resp.Body.Close()
		answer <- resp.StatusCode
	}()
	pw.Write(data[:len(data)/2])
	// Written is not yet received: until modelxd has accepted the
	// connection, the bytes sit in the kernel's queue, and a shutdown then
	// resets the connection without it ever being a request. Wait for the
	// server to count the upload.
	testenv.WaitFor(t, 20*time.Second, "the upload to reach the server", func() bool { return uploadInFlight(t, url) })
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// Shutdown has begun once new requests are refused, while the upload
	// is still in flight.
	testenv.WaitFor(t, 20*time.Second, "shutdown to refuse new requests", func() bool {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err != nil
	})
	pw.Write(data[len(data)/2:])
	pw.Close()
	if code := <-answer; code != http.StatusCreated {
		t.Fatalf("the in-flight upload got %d, want 201", code)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "blobs", "sha256", d.Encoded()[:2], d.Encoded())); err != nil {
		t.Fatalf("the drained upload is not stored: %v", err)
	}
}

// uploadInFlight reports whether the server's metrics count a proxied
// upload in progress.
func uploadInFlight(t *testing.T, url string) bool {
	t.Helper()
	return testenv.Metric(t, testenv.Scrape(t, url), "modelxd_uploads_in_flight", "") == 1
}

// TestOpenBackend: the flags select the backend by name, and a
// configuration without one says which flags to set.
func TestOpenBackend(t *testing.T) {
	ctx := context.Background()
	if _, _, err := server.OpenBackend(ctx, server.Config{}); err == nil || err.Error() != "no storage configured: set --data-dir, or --s3-url and --s3-bucket" {
		t.Errorf("no storage: %v", err)
	}
	if _, kind, err := server.OpenBackend(ctx, server.Config{DataDir: t.TempDir()}); err != nil || kind != "fs" {
		t.Errorf("--data-dir: %q, %v", kind, err)
	}
	if _, _, err := server.OpenBackend(ctx, server.Config{DataDir: t.TempDir(), S3: server.S3Config{Endpoint: "http://127.0.0.1:1"}}); err == nil || err.Error() != "s3: bucket is required (--s3-bucket)" {
		t.Errorf("--s3-url without --s3-bucket: %v", err)
	}
}
