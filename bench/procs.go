package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"modelx.io/modelx/internal/testenv"
)

// versitygwBinary returns the cached versitygw or an error that says how
// to build it.
func versitygwBinary() (string, error) {
	p := testenv.BinaryPath("versitygw", testenv.VersitygwVersion)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("versitygw %s not found at %s: run `make tools` to build it", testenv.VersitygwVersion, p)
	}
	return p, nil
}

// proc is a child server process.
type proc struct {
	name   string
	url    string
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop asks the process to end (SIGTERM), then kills it after 10 s.
func (p *proc) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.log.Close()
}

// cpu returns the CPU time (user + system) the process has used, from
// /proc/PID/stat (clock ticks of 1/100 s, the Linux value on every
// mainstream architecture).
func (p *proc) cpu() time.Duration {
	if p == nil {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		return 0
	}
	// The command name is in parentheses and may hold spaces: split after it.
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14 overall
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15 overall
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// memory reads VmHWM (peak resident set) and VmRSS from /proc/PID/status.
func (p *proc) memory() (hwm, rss int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmHWM" && k != "VmRSS") {
			continue
		}
		fields := strings.Fields(v) // "123456 kB"
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc/%d/status: unexpected %s line %q", p.pid(), k, v)
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, 0, err
		}
		if k == "VmHWM" {
			hwm = n << 10
		} else {
			rss = n << 10
		}
	}
	if hwm == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status has no VmHWM", p.pid())
	}
	return hwm, rss, sc.Err()
}

// selfCPU is the CPU time this process (the client side) has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startProc starts bin with args on a free 127.0.0.1 port and waits until
// healthPath on it answers 200. args and env may use %d for the port. It retries on another port if the process exits,
// since a port can be taken between choosing and binding it.
func startProc(ctx context.Context, name, bin, logPath string, args, env []string, healthPath string) (*proc, error) {
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		fill := func(in []string) []string {
			out := make([]string, len(in))
			for i, a := range in {
				if strings.Contains(a, "%d") {
					a = fmt.Sprintf(a, port)
				}
				out[i] = a
			}
			return out
		}
		logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, fill(args)...)
		cmd.Env = append(cleanEnv(), env...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		// The servers must not outlive the benchmark if it is killed.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			logFile.Close()
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		p := &proc{name: name, url: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd, log: logFile, exited: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(p.exited) }()
		if lastErr = testenv.WaitHealthy(ctx, p.url+healthPath, p.exited); lastErr == nil {
			return p, nil
		}
		_ = cmd.Process.Kill()
		<-p.exited
		logFile.Close()
		if b, err := os.ReadFile(logPath); err == nil {
			lastErr = fmt.Errorf("%w; its log (%s) ends:\n%s", lastErr, logPath, tail(string(b), 2000))
		}
	}
	return nil, fmt.Errorf("%s did not become healthy: %w", name, lastErr)
}

// cleanEnv is this process's environment without MODELXD_* settings, so a
// developer's shell cannot change how the benchmark's servers run.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MODELXD_") {
			out = append(out, kv)
		}
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// s3Server is a running versitygw.
type s3Server struct {
	*proc
	accessKey, secretKey, region string
}

// startVersitygw runs versitygw's posix backend on dataDir at 127.0.0.1.
func startVersitygw(ctx context.Context, dataDir, logPath string) (*s3Server, error) {
	bin, err := versitygwBinary()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	srv := &s3Server{accessKey: "AK" + randomHex(8), secretKey: randomHex(20), region: "us-east-1"}
	// versitygw takes its credentials as flags; they are random, local and
	// die with the process.
	srv.proc, err = startProc(ctx, "versitygw", bin, logPath, []string{
		"--access", srv.accessKey, "--secret", srv.secretKey, "--region", srv.region,
		"--port", "127.0.0.1:%d", "--health", "/health", "posix", dataDir,
	}, nil, "/health")
	if err != nil {
		return nil, err
	}
	return srv, nil
}

// moduleRoot finds the directory of the main module's go.mod.
func moduleRoot(goBin string) (string, error) {
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run the benchmark from inside the modelx module (go run ./bench)")
	}
	return filepath.Dir(gomod), nil
}

// buildModelxd builds cmd/modelxd into dir and returns the binary's path.
func buildModelxd(dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command is needed to build modelxd: %w", err)
	}
	root, err := moduleRoot(goBin)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "modelxd")
	cmd := exec.Command(goBin, "build", "-o", out, "./cmd/modelxd")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/modelxd: %w\n%s", err, b)
	}
	return out, nil
}

// startModelxdFS runs modelxd on a local-filesystem store (proxy mode).
func startModelxdFS(ctx context.Context, bin, dataDir, logPath string) (*proc, error) {
	return startProc(ctx, "modelxd (fs)", bin, logPath,
		[]string{"--listen", "127.0.0.1:%d", "--data-dir", dataDir}, nil, "/healthz")
}

// startModelxdS3 runs modelxd on an S3 bucket with presigned redirects. The
// secret key goes through the environment, not the command line.
func startModelxdS3(ctx context.Context, bin string, s3 *s3Server, bucket, logPath string) (*proc, error) {
	return startProc(ctx, "modelxd (s3)", bin, logPath,
		[]string{"--listen", "127.0.0.1:%d", "--s3-url", s3.url, "--s3-bucket", bucket, "--s3-region", s3.region,
			"--s3-access-key", s3.accessKey, "--s3-path-style", "--enable-redirect"},
		[]string{"MODELXD_S3_SECRET_KEY=" + s3.secretKey}, "/healthz")
}
