package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/storage/s3"
)

func TestParseFlags(t *testing.T) {
	t.Setenv("MODELXD_LISTEN", ":9999")
	t.Setenv("MODELXD_S3_PATH_STYLE", "true")
	t.Setenv("MODELXD_S3_PRESIGN_EXPIRE", "5m")
	cfg, _, err := parseFlags([]string{"--s3-url", "http://s3.local", "--s3-bucket", "models", "--enable-redirect"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":9999" || !cfg.S3.PathStyle || cfg.Options.PresignExpiry != 5*time.Minute ||
		cfg.S3.Endpoint != "http://s3.local" || cfg.S3.Bucket != "models" || !cfg.Options.EnableRedirect || !cfg.UsesS3() {
		t.Fatalf("config %+v", cfg)
	}
	cfg, _, err = parseFlags([]string{"--oidc-issuer", "https://idp", "--oidc-audience", "modelx", "--oidc-allow-unverified-email"})
	if err != nil || len(cfg.Auth.Issuers) != 1 || !cfg.Auth.Issuers[0].AllowUnverifiedEmail || cfg.Auth.Issuers[0].Cluster != "" {
		t.Fatalf("--oidc-allow-unverified-email: %+v %v", cfg.Auth.Issuers, err)
	}
	// A flag beats its environment variable.
	if cfg, _, _ := parseFlags([]string{"--listen", ":7"}); cfg.Listen != ":7" {
		t.Fatalf("listen %q", cfg.Listen)
	}
	// Limits: sizes with units, the floor's 0 (off), trusted proxies.
	if cfg, _, _ := parseFlags(nil); cfg.Options.MinUploadRate != 64<<10 || cfg.Options.MaxUploadsPerIdentity != 16 || cfg.Options.TrustedProxies != nil ||
		cfg.Options.ManifestParseMemory != 256<<20 || cfg.Options.MaxHoldTTL != 720*time.Hour {
		t.Fatalf("default limits: %+v", cfg.Options)
	}
	t.Setenv("MODELXD_MAX_HOLD_TTL", "48h")
	if cfg, _, _ := parseFlags(nil); cfg.Options.MaxHoldTTL != 48*time.Hour {
		t.Fatalf("MODELXD_MAX_HOLD_TTL=48h: %v", cfg.Options.MaxHoldTTL)
	}
	if cfg, _, _ := parseFlags([]string{"--max-hold-ttl", "2160h"}); cfg.Options.MaxHoldTTL != 2160*time.Hour {
		t.Fatalf("--max-hold-ttl 2160h: %v", cfg.Options.MaxHoldTTL)
	}
	os.Unsetenv("MODELXD_MAX_HOLD_TTL")
	t.Setenv("MODELXD_MIN_UPLOAD_RATE", "1MiB")
	cfg, _, err = parseFlags([]string{"--max-uploads-per-identity", "4", "--trusted-proxies", "10.0.0.0/8, 192.168.1.7,fd00::/8", "--manifest-parse-memory", "1GiB"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Options.MinUploadRate != 1<<20 || cfg.Options.MaxUploadsPerIdentity != 4 || cfg.Options.ManifestParseMemory != 1<<30 ||
		fmt.Sprint(cfg.Options.TrustedProxies) != "[10.0.0.0/8 192.168.1.7/32 fd00::/8]" {
		t.Fatalf("limits: %+v", cfg.Options)
	}
	if cfg, _, _ := parseFlags([]string{"--min-upload-rate", "0"}); cfg.Options.MinUploadRate >= 0 {
		t.Fatalf("--min-upload-rate 0 leaves the floor at %d", cfg.Options.MinUploadRate)
	}
	os.Unsetenv("MODELXD_MIN_UPLOAD_RATE")
	for in, want := range map[string]int64{"65536": 65536, "64KiB": 64 << 10, "64k": 64 << 10, "256 MiB": 256 << 20, "2G": 2 << 30, "10B": 10, "0": 0} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fast", "-1KiB", "1.5MiB", "64KB", "99999999999GiB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) did not fail", in)
		}
	}
	for _, tc := range []struct {
		env, val string
		args     []string
		want     string
	}{
		{"MODELXD_ENABLE_REDIRECT", "maybe", nil, "MODELXD_ENABLE_REDIRECT"},
		{"MODELXD_MIN_UPLOAD_RATE", "fast", nil, "MODELXD_MIN_UPLOAD_RATE"},
		{"", "", []string{"--min-upload-rate", "1.5MiB"}, "min-upload-rate"},
		{"", "", []string{"--trusted-proxies", "10.0.0.0/8,proxy.local"}, "--trusted-proxies"},
		{"MODELXD_GC_INTERVAL", "soon", nil, "MODELXD_GC_INTERVAL"},
		{"MODELXD_MAX_HOLD_TTL", "a month", nil, "MODELXD_MAX_HOLD_TTL"},
		{"", "", []string{"extra"}, "unexpected argument"},
		{"", "", []string{"--log-format", "xml"}, "--log-format"},
		{"", "", []string{"--no-such-flag"}, "no-such-flag"},
	} {
		if tc.env != "" {
			t.Setenv(tc.env, tc.val)
		}
		_, _, err := parseFlags(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%v) with %s=%q: %v, want an error naming %q", tc.args, tc.env, tc.val, err, tc.want)
		}
		if tc.env != "" {
			os.Unsetenv(tc.env)
		}
	}
}

// buildModelxd compiles this command once per test binary run.
func buildModelxd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "modelxd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startModelxd runs the binary and waits until /readyz answers.
func startModelxd(t *testing.T, bin string, env []string, args ...string) (string, *exec.Cmd, *bytes.Buffer) {
	t.Helper()
	port := testenv.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, append([]string{"--listen", addr}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	url := "http://" + addr
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url, cmd, &logs
			}
		}
	}
	t.Fatalf("modelxd did not become ready:\n%s", logs.String())
	return "", nil, nil
}

func noRedirect() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func stop(t *testing.T, cmd *exec.Cmd, logs *bytes.Buffer) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("modelxd exited with %v after SIGTERM:\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("modelxd did not stop on SIGTERM")
	}
	if !strings.Contains(logs.String(), "shutting down") {
		t.Fatalf("no graceful shutdown in the log:\n%s", logs.String())
	}
}

func TestModelxdBinary(t *testing.T) {
	bin := buildModelxd(t)

	t.Run("fs", func(t *testing.T) {
		dataDir := t.TempDir()
		url, cmd, logs := startModelxd(t, bin, []string{"MODELXD_DATA_DIR=" + dataDir})
		data := []byte("weights")
		d := digest.FromBytes(data)
		req, _ := http.NewRequest(http.MethodPut, url+"/lib/m/blobs/"+string(d), bytes.NewReader(data))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT blob: %d", resp.StatusCode)
		}
		if _, err := os.Stat(filepath.Join(dataDir, "blobs", "sha256", d.Encoded()[:2], d.Encoded())); err != nil {
			t.Fatalf("blob not under --data-dir: %v", err)
		}
		stop(t, cmd, logs)
	})

	t.Run("s3-redirect", func(t *testing.T) {
		srv := testenv.StartS3(t)
		ctx := context.Background()
		st, err := s3.New(ctx, s3.Config{Endpoint: srv.URL, Bucket: "models", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PathStyle: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateBucket(ctx); err != nil {
			t.Fatal(err)
		}
		url, cmd, logs := startModelxd(t, bin,
			[]string{"MODELXD_S3_SECRET_KEY=" + srv.SecretKey},
			"--s3-url", srv.URL, "--s3-bucket", "models", "--s3-access-key", srv.AccessKey,
			"--s3-path-style", "--enable-redirect", "--s3-presign-expire", "2m")
		d := digest.FromString("w")
		req, _ := http.NewRequest(http.MethodPut, url+"/lib/m/blobs/"+string(d), strings.NewReader("w"))
		resp, err := noRedirect().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, srv.URL+"/models/blobs/sha256/") || !strings.Contains(loc, "X-Amz-Expires=120") {
			t.Fatalf("PUT blob: %d Location %q, want 302 to a presigned URL valid 120s", resp.StatusCode, loc)
		}
		stop(t, cmd, logs)
		if strings.Contains(logs.String(), srv.SecretKey) || strings.Contains(logs.String(), "X-Amz-Signature") {
			t.Fatalf("the log holds a secret:\n%s", logs.String())
		}
	})

	t.Run("oidc", func(t *testing.T) {
		dex := testenv.StartDex(t, testenv.DexOptions{})
		policy := filepath.Join(t.TempDir(), "policy.yaml")
		os.WriteFile(policy, []byte("rules:\n- repositories: [\"*\"]\n  actions: [admin]\n  users: [alice@example.com]\n"), 0o600)
		url, cmd, logs := startModelxd(t, bin, []string{"MODELXD_DATA_DIR=" + t.TempDir()},
			"--oidc-issuer", dex.Issuer, "--oidc-audience", "modelx", "--policy", policy)
		resp, err := http.Get(url + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Bearer realm=") {
			t.Fatalf("anonymous GET /: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		for who, want := range map[string]int{"alice@example.com": http.StatusOK, "bob@example.com": http.StatusForbidden} {
			req, _ := http.NewRequest(http.MethodPost, url+"/nlp/bert/garbage-collect", nil)
			req.Header.Set("Authorization", "Bearer "+dex.Token(t, "modelx", who))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Fatalf("gc as %s: %d, want %d", who, resp.StatusCode, want)
			}
		}
		resp, err = http.Get(url + "/.well-known/modelx-configuration")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), dex.Issuer) || !strings.Contains(string(body), `"clientID":"modelx"`) {
			t.Fatalf("configuration %s", body)
		}
		stop(t, cmd, logs)
	})

	t.Run("bad-config", func(t *testing.T) {
		dir := t.TempDir()
		file := func(name, content string) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		oldSA := file("old-sa.yaml", "rules:\n- {repositories: [\"*\"], actions: [pull], serviceAccounts: [\"serving/*\"]}\n")
		prodSA := file("prod-sa.yaml", "rules:\n- {repositories: [\"*\"], actions: [pull], serviceAccounts: [\"prod/serving/*\"]}\n")
		devCluster := file("dev.yaml", "issuers:\n- {issuer: https://dev.k8s, audience: modelx, cluster: dev}\n")
		peopleGroups := file("cluster-groups.yaml", "issuers:\n- {issuer: https://prod.k8s, audience: modelx, cluster: prod, groupsClaim: groups}\n")
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--enable-redirect"}, "--enable-redirect needs the S3 backend"},
			{[]string{"--tls-cert", "x.pem"}, "--tls-key"},
			{[]string{"--s3-url", "http://127.0.0.1:1", "--s3-bucket", "b", "--s3-access-key", "k"}, "secret key"},
			{[]string{"--policy", "p.yaml"}, "need authentication"},
			{[]string{"--oidc-issuer", "https://idp"}, "go together"},
			{[]string{"--auth-config", "/nonexistent.yaml"}, "nonexistent"},
			// serviceAccounts entries name a cluster that the auth config marks.
			{[]string{"--oidc-issuer", "https://idp", "--oidc-audience", "modelx", "--policy", oldSA}, `"serving/*" names no cluster: write CLUSTER/serving/*`},
			{[]string{"--oidc-issuer", "https://idp", "--oidc-audience", "modelx", "--policy", prodSA}, `names cluster "prod", but no issuer in the auth config has ` + "`cluster: prod`"},
			{[]string{"--auth-config", devCluster, "--policy", prodSA}, `names cluster "prod"`},
			{[]string{"--auth-config", peopleGroups}, "groupsClaim is for people issuers"},
		} {
			// A modelxd that accepts the config serves until killed: bound the wait.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			out, err := exec.CommandContext(ctx, bin, append([]string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, tc.args...)...).CombinedOutput()
			cancel()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("modelxd %v: %v %q, want a failure naming %q", tc.args, err, out, tc.want)
			}
		}
		// The same policy starts with the cluster configured.
		prodCluster := file("prod.yaml", "issuers:\n- {issuer: https://prod.k8s, audience: modelx, cluster: prod}\n")
		_, cmd, logs := startModelxd(t, bin, []string{"MODELXD_DATA_DIR=" + t.TempDir()}, "--auth-config", prodCluster, "--policy", prodSA)
		stop(t, cmd, logs)
	})
}
