package main

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// metaResult is the throughput of one kind of metadata request.
type metaResult struct {
	Op         string  `json:"op"`
	Path       string  `json:"path"`
	Clients    int     `json:"clients"`
	Seconds    float64 `json:"seconds"`
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	PerSecond  float64 `json:"requests_per_second"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	ServerCPUs float64 `json:"server_cpu_seconds"`
	ClientCPUs float64 `json:"client_cpu_seconds"`
}

// loadTest runs clients goroutines sending method url back to back for
// dur (after a short unmeasured warm-up that opens the connections) and
// reports throughput and latency. Bodies are read to the end.
func loadTest(ctx context.Context, server *proc, op, method, url string, clients int, dur time.Duration) metaResult {
	tr := &http.Transport{MaxIdleConns: 2 * clients, MaxIdleConnsPerHost: 2 * clients, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	one := func() (time.Duration, bool) {
		start := time.Now()
		req, err := http.NewRequestWithContext(ctx, method, url, nil)
		if err != nil {
			return 0, false
		}
		resp, err := hc.Do(req)
		if err != nil {
			return time.Since(start), false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(start), resp.StatusCode == http.StatusOK
	}
	run := func(d time.Duration, record bool) ([]time.Duration, int, time.Duration) {
		var mu sync.Mutex
		var all []time.Duration
		errs := 0
		start := time.Now()
		deadline := start.Add(d)
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				var lat []time.Duration
				bad := 0
				for time.Now().Before(deadline) && ctx.Err() == nil {
					l, ok := one()
					if !ok {
						bad++
						continue
					}
					if record {
						lat = append(lat, l)
					}
				}
				mu.Lock()
				all = append(all, lat...)
				errs += bad
				mu.Unlock()
			})
		}
		wg.Wait()
		return all, errs, time.Since(start)
	}
	run(300*time.Millisecond, false)
	cpu0, self0 := server.cpu(), selfCPU()
	lat, errs, elapsed := run(dur, true)
	cpu1, self1 := server.cpu(), selfCPU()
	sorted := sortedDurations(lat)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	res := metaResult{Op: op, Clients: clients, Seconds: elapsed.Seconds(), Requests: len(lat), Errors: errs,
		PerSecond: float64(len(lat)) / elapsed.Seconds(), P50Ms: ms(percentile(sorted, 50)), P99Ms: ms(percentile(sorted, 99)),
		ServerCPUs: (cpu1 - cpu0).Seconds(), ClientCPUs: (self1 - self0).Seconds()}
	if len(sorted) > 0 {
		res.MaxMs = ms(sorted[len(sorted)-1])
	}
	return res
}
