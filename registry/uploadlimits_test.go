package registry

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/storage"
	"modelx.io/modelx/storage/fs"
)

// limitsEnv is a real registry on the filesystem backend, served over
// httptest, whose internals a test may look at.
type limitsEnv struct {
	reg   *Registry
	url   string
	store Backend
}

func startLimited(t *testing.T, opts Options, setup func(*Registry)) *limitsEnv {
	t.Helper()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	reg, err := New(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(reg)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	return &limitsEnv{reg: reg, url: srv.URL, store: st}
}

// value reads a gauge or counter.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

// robots returns an authenticator that knows a robot for each name, and
// their tokens.
func robots(t *testing.T, names ...string) (*auth.Authenticator, map[string]string) {
	t.Helper()
	tokens := map[string]string{}
	var cfg auth.Config
	for _, name := range names {
		token := "mxr_" + name + "_limits_test_token"
		sum := sha256.Sum256([]byte(token))
		cfg.Robots = append(cfg.Robots, auth.Robot{Name: name, TokenSHA256: hex.EncodeToString(sum[:])})
		tokens[name] = token
	}
	a, err := auth.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a, tokens
}

// holdUpload sends the headers and the first bytes of a blob upload over a
// raw connection, then stops sending: an upload that holds its slot.
func (e *limitsEnv) holdUpload(t *testing.T, data []byte, header ...string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var h strings.Builder
	for i := 0; i+1 < len(header); i += 2 {
		fmt.Fprintf(&h, "%s: %s\r\n", header[i], header[i+1])
	}
	fmt.Fprintf(conn, "PUT /lim/model/blobs/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n", digest.FromBytes(data), len(data), h.String())
	conn.Write(data[:1])
	return conn
}

// waitInFlight waits until the registry counts n proxied uploads.
func (e *limitsEnv) waitInFlight(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); value(e.reg.metrics.uploadsInFlight) != float64(n); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%v uploads in flight, want %d", value(e.reg.metrics.uploadsInFlight), n)
		}
	}
}

// put uploads data as a blob and returns the status, Retry-After and body.
func (e *limitsEnv) put(t *testing.T, data []byte, header ...string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, e.url+"/lim/model/blobs/"+string(digest.FromBytes(data)), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(body)
}

// TestUploadsBoundedPerIdentity: one identity that tries to hold as many
// uploads as the registry takes gets only its own bound, so another
// identity's uploads still go through.
func TestUploadsBoundedPerIdentity(t *testing.T) {
	authn, tokens := robots(t, "hog", "other")
	e := startLimited(t, Options{Authenticator: authn, MaxUploads: 4, MaxUploadsPerIdentity: 2, MinUploadRate: -1}, nil)
	hog := []string{"Authorization", "Bearer " + tokens["hog"]}
	other := []string{"Authorization", "Bearer " + tokens["other"]}
	for i := range 4 {
		conn := e.holdUpload(t, bytes.Repeat([]byte{byte(i)}, 1<<10), hog...)
		if i < 2 {
			e.waitInFlight(t, i+1)
			continue
		}
		// Past its bound, the hog's held upload is refused at once, naming
		// the limit. (A bound for the test: unrefused, it would hang.)
		conn.SetReadDeadline(time.Now().Add(time.Minute))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("the hog's upload %d, past its bound, got no answer: %v", i+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(string(body), "--max-uploads-per-identity") || !strings.Contains(string(body), "robot hog") {
			t.Fatalf("the hog's upload %d: %d, Retry-After %q, %s", i+1, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	// Another identity uploads while the hog's two uploads are held.
	for i := range 2 {
		if status, _, body := e.put(t, []byte(fmt.Sprintf("other blob %d", i)), other...); status != http.StatusCreated {
			t.Fatalf("another identity's upload: %d %s", status, body)
		}
	}
	if got := value(e.reg.metrics.uploadsRefused.WithLabelValues("max_uploads_per_identity")); got != 2 {
		t.Errorf("refusals counted: %v, want 2", got)
	}
	e.waitInFlight(t, 2)
}

// TestAnonymousUploadsKeyedByAddress: anonymous uploads count against the
// client's address; X-Forwarded-For names it only when the peer is a
// trusted proxy, so a client cannot escape its bound by sending the header.
func TestAnonymousUploadsKeyedByAddress(t *testing.T) {
	t.Run("trusted proxy", func(t *testing.T) {
		e := startLimited(t, Options{MaxUploadsPerIdentity: 1, MinUploadRate: -1, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, nil)
		e.holdUpload(t, bytes.Repeat([]byte("a"), 1<<10), "X-Forwarded-For", "203.0.113.7")
		e.waitInFlight(t, 1)
		status, _, body := e.put(t, []byte("same client"), "X-Forwarded-For", "198.51.100.1, 203.0.113.7") // the left entry is the client's to forge
		if status != http.StatusTooManyRequests || !strings.Contains(body, "client address 203.0.113.7") {
			t.Fatalf("a second upload of the same client behind the proxy: %d %s", status, body)
		}
		if status, _, body := e.put(t, []byte("another client"), "X-Forwarded-For", "198.51.100.9"); status != http.StatusCreated {
			t.Fatalf("another client behind the proxy: %d %s", status, body)
		}
	})
	t.Run("no trusted proxy", func(t *testing.T) {
		e := startLimited(t, Options{MaxUploadsPerIdentity: 1, MinUploadRate: -1}, nil)
		e.holdUpload(t, bytes.Repeat([]byte("a"), 1<<10))
		e.waitInFlight(t, 1)
		status, _, body := e.put(t, []byte("forged"), "X-Forwarded-For", "198.51.100.9")
		if status != http.StatusTooManyRequests || !strings.Contains(body, "client address 127.0.0.1") {
			t.Fatalf("an upload with a forged X-Forwarded-For: %d %s", status, body)
		}
	})
}

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, c := range []struct {
		remote, xff string
		trusted     []netip.Prefix
		want        string
	}{
		{"192.0.2.1:5000", "", nil, "192.0.2.1"},
		{"192.0.2.1:5000", "198.51.100.1", nil, "192.0.2.1"},       // not trusted: the header is ignored
		{"192.0.2.1:5000", "198.51.100.1", trusted, "192.0.2.1"},   // a peer outside the trusted ranges
		{"10.1.2.3:5000", "198.51.100.1", trusted, "198.51.100.1"}, // one trusted proxy
		{"10.1.2.3:5000", "6.6.6.6, 198.51.100.1, 10.9.9.9", trusted, "198.51.100.1"},
		{"10.1.2.3:5000", "garbage, 198.51.100.1", trusted, "198.51.100.1"},
		{"10.1.2.3:5000", "198.51.100.1, garbage", trusted, "10.1.2.3"}, // a malformed hop ends the walk
		{"10.1.2.3:5000", "", trusted, "10.1.2.3"},
		{"10.1.2.3:5000", "10.4.4.4", trusted, "10.4.4.4"}, // all trusted: the farthest
		{"[2001:db8:1:2:3:4:5:6]:443", "", nil, "2001:db8:1:2::/64"},
		{"[fd00::1]:443", "2001:db8::9", trusted, "2001:db8::/64"},
		{"[::ffff:192.0.2.5]:80", "", nil, "192.0.2.5"},
		{"pipe", "", nil, "pipe"},
	} {
		r := httptest.NewRequest(http.MethodPut, "/", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := clientAddr(r, c.trusted); got != c.want {
			t.Errorf("clientAddr(%s, X-Forwarded-For %q, trusted %v) = %s, want %s", c.remote, c.xff, c.trusted, got, c.want)
		}
	}
}

// fakeClock is a clock that moves only when told.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// timedReader returns, for each read, the next of its sizes, and takes the
// next of its waits on the clock to do so.
type timedReader struct {
	clock *fakeClock
	reads []timedRead
}

type timedRead struct {
	n    int
	wait time.Duration
}

func (r *timedReader) Read(p []byte) (int, error) {
	if len(r.reads) == 0 {
		return 0, io.EOF
	}
	next := r.reads[0]
	r.reads = r.reads[1:]
	r.clock.now = r.clock.now.Add(next.wait)
	return min(next.n, len(p)), nil
}

func TestRateFloor(t *testing.T) {
	repeat := func(n int, rd timedRead) []timedRead {
		out := make([]timedRead, n)
		for i := range out {
			out[i] = rd
		}
		return out
	}
	const floor = 64 << 10
	for _, c := range []struct {
		name   string
		reads  []timedRead
		pause  time.Duration // between reads, outside them: the backend writing
		cutAt  int           // the read that fails, 0 for none
		minCut float64
	}{
		{name: "fast", reads: repeat(100, timedRead{32 << 10, 100 * time.Millisecond})},
		{name: "exactly the floor", reads: repeat(100, timedRead{64 << 10, time.Second})},
		{name: "trickle", reads: repeat(100, timedRead{1, 3 * time.Second}), cutAt: 7}, // grace: 4 reads (12 s); then a window of 4 (12 s)
		{name: "slow start within the grace", reads: append(repeat(3, timedRead{1, 3 * time.Second}), repeat(100, timedRead{32 << 10, 100 * time.Millisecond})...)},
		{name: "slow later", reads: append(repeat(200, timedRead{32 << 10, 100 * time.Millisecond}), repeat(100, timedRead{1 << 10, time.Second})...), cutAt: 210},
		{name: "slow backend", reads: repeat(100, timedRead{32 << 10, 10 * time.Millisecond}), pause: 10 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := &fakeClock{now: time.Unix(1e9, 0)}
			cuts := 0
			b := &floorBody{
				ReadCloser: io.NopCloser(&timedReader{clock: clock, reads: c.reads}),
				floor:      rateFloor{bytesPerSec: floor, grace: 10 * time.Second, window: 10 * time.Second, clock: clock.Now},
				cut:        func(rate float64) error { cuts++; return fmt.Errorf("%w at %.0f B/s", errUploadTooSlow, rate) },
			}
			buf := make([]byte, 64<<10)
			for i := 1; ; i++ {
				_, err := b.Read(buf)
				if err == io.EOF {
					if c.cutAt != 0 {
						t.Fatalf("read to the end, want a cut at read %d", c.cutAt)
					}
					return
				}
				if err != nil {
					if i != c.cutAt || cuts != 1 {
						t.Fatalf("cut at read %d (%d cuts): %v; want read %d", i, cuts, err, c.cutAt)
					}
					if _, again := b.Read(buf); again != err {
						t.Fatalf("a read after the cut: %v", again)
					}
					return
				}
				clock.now = clock.now.Add(c.pause)
			}
		})
	}
}

// stepClock is a clock that moves one second at every reading: each read
// of a body under the rate floor then takes one second, however long it
// really takes, so a test decides the measured rate by what it sends.
func stepClock() func() time.Time {
	var ticks atomic.Int64
	return func() time.Time { return time.Unix(ticks.Add(1), 0) }
}

// TestTricklingUploadIsCut: an upload whose body trickles in is cut once
// its grace and a window have passed, answered 429 naming the floor; it
// frees its slot, and nothing of it is stored.
func TestTricklingUploadIsCut(t *testing.T) {
	e := startLimited(t, Options{MaxUploads: 1, IOTimeout: 10 * time.Minute}, func(reg *Registry) {
		// Every read counts one second: the trickle below brings a byte or
		// a few a "second", far under 1 KiB/s; a small upload sent at once
		// is read within its grace of 50 reads.
		reg.uploads.floor = rateFloor{bytesPerSec: 1 << 10, grace: 50 * time.Second, window: 5 * time.Second, clock: stepClock()}
	})
	data := bytes.Repeat([]byte("trickle "), 8<<10)
	conn := e.holdUpload(t, data)
	e.waitInFlight(t, 1)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 1; i < len(data); i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if _, err := conn.Write(data[i : i+1]); err != nil {
				return // the server closed the connection
			}
		}
	})
	// A bound for the test, not the server: without the floor, the trickle
	// would hold the upload for minutes.
	conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("no answer to the trickling upload: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "--min-upload-rate") {
		t.Fatalf("the trickling upload: %d, Retry-After %q, %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	// Its slot is free again: with MaxUploads 1, this upload gets it.
	if status, _, body := e.put(t, []byte("an upload sent at once")); status != http.StatusCreated {
		t.Fatalf("an upload after the cut: %d %s", status, body)
	}
	if _, err := e.store.Stat(t.Context(), blobKey(digest.FromBytes(data))); err == nil {
		t.Fatal("the cut upload was stored")
	}
	n := 0
	if err := e.store.List(t.Context(), "blobs/", func(storage.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d blobs stored, want only the one sent at once", n)
	}
	if got := value(e.reg.metrics.uploadsRefused.WithLabelValues("min_upload_rate")); got != 1 {
		t.Errorf("cuts counted: %v, want 1", got)
	}
	if got := value(e.reg.metrics.storageErrors.WithLabelValues("put")); got != 0 {
		t.Errorf("the cut counted as %v storage errors", got)
	}
}
