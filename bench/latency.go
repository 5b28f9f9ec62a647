package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// The loopback has no latency, so request counts cost almost nothing here
// and a great deal on a real network, where the registry is a round trip
// away and every S3 call is several. With -latency D the bench puts a
// delay proxy in front of the S3 server and of each modelxd: every byte
// crossing it, either way, arrives D later, as on a link with a 2×D round
// trip. Throughput is kept (bytes are forwarded as they come, each chunk
// held until its time), so only waiting on answers costs. The floor, the
// client and modelxd's own S3 calls all go through it.
//
// The proxy is this binary again, run as its own process (so its CPU time
// is not the client's) when delayProxyEnv is set to "TARGET DELAY".
const delayProxyEnv = "MODELX_BENCH_DELAY_PROXY"

// startDelayProxy runs a delay proxy to target (host:port) on a free port
// and returns it; its url is the address to use instead of target's.
func startDelayProxy(ctx context.Context, name, target string, delay time.Duration, logPath, healthPath string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return startProc(ctx, name, self, logPath, []string{"127.0.0.1:%d"},
		[]string{delayProxyEnv + "=" + target + " " + delay.String()}, healthPath)
}

// maybeRunDelayProxy runs the delay proxy and exits when this process was
// started as one.
func maybeRunDelayProxy() {
	spec, ok := os.LookupEnv(delayProxyEnv)
	if !ok {
		return
	}
	target, d, _ := strings.Cut(spec, " ")
	delay, err := time.ParseDuration(d)
	if err != nil || len(os.Args) != 2 {
		fmt.Fprintf(os.Stderr, "delay proxy: want %s=\"HOST:PORT DELAY\" and a listen address: %v\n", delayProxyEnv, err)
		os.Exit(2)
	}
	if err := runDelayProxy(os.Args[1], target, delay); err != nil {
		fmt.Fprintln(os.Stderr, "delay proxy:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runDelayProxy(listen, target string, delay time.Duration) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			t, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer t.Close()
			done := make(chan struct{})
			go func() { delayCopy(t, c, delay); close(done) }()
			delayCopy(c, t, delay)
			<-done
		}()
	}
}

// delayedChunk is bytes read from one side and when to write them to the
// other.
type delayedChunk struct {
	buf *[]byte
	n   int
	due time.Time
}

var chunkPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// delayCopy forwards src to dst, each chunk delay after it was read, then
// half-closes dst. Reading runs ahead of writing, bounded by the channel,
// so a stream keeps its throughput and only gains the delay.
func delayCopy(dst, src net.Conn, delay time.Duration) {
	chunks := make(chan delayedChunk, 256)
	go func() {
		defer close(chunks)
		for {
			buf := chunkPool.Get().(*[]byte)
			n, err := src.Read(*buf)
			if n > 0 {
				chunks <- delayedChunk{buf, n, time.Now().Add(delay)}
			} else {
				chunkPool.Put(buf)
			}
			if err != nil {
				return
			}
		}
	}()
	failed := false
	for c := range chunks {
		if !failed {
			time.Sleep(time.Until(c.due))
			if _, err := dst.Write((*c.buf)[:c.n]); err != nil && !errors.Is(err, io.EOF) {
				failed = true // drain, so the reader ends
				_ = src.Close()
			}
		}
		chunkPool.Put(c.buf)
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}
