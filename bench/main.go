// Command bench measures every modelx transfer path in one run, against
// real servers on 127.0.0.1: versitygw (S3), modelxd on the local
// filesystem (blobs proxied through the registry) and modelxd on S3 with
// presigned redirects. It generates two seeded synthetic models (LLM-like
// and many-small-files), runs cold, no-op and incremental pushes and
// pulls, measures the object store's own floor for the same bytes,
// registry metadata throughput and the proxy's peak RSS, and prints a
// Markdown report; -out writes the same figures as JSON.
//
//	go run ./bench                       # defaults: -size 512MiB -small-files 20000
//	go run ./bench -size 1GiB -j 8 -scenarios cold-push,cold-pull,floor
//
// It needs versitygw from `make tools`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"modelx.io/modelx/client"
	"modelx.io/modelx/storage/s3"
)

// Scenario names, in the order they run for each (model, mode).
const (
	scColdPush    = "cold-push"
	scNoopPush    = "noop-push"
	scMountPush   = "push-mount"
	scSmallChange = "push-small-change"
	scTensorShift = "push-tensor-shift"
	scColdPull    = "cold-pull"
	scNoopPull    = "noop-pull"
	scPartialPull = "pull-partial"
	scOneFile     = "pull-one-file"
	scFloor       = "floor"
	scMeta        = "meta"
)

var transferScenarios = []string{scColdPush, scNoopPush, scMountPush, scSmallChange, scTensorShift, scColdPull, scNoopPull, scPartialPull, scOneFile}

// scenarioDeps names what each scenario needs to have run before it.
var scenarioDeps = map[string][]string{
	scNoopPush:    {scColdPush},
	scMountPush:   {scColdPush},
	scSmallChange: {scColdPush},
	scTensorShift: {scSmallChange},
	scColdPull:    {scColdPush},
	scNoopPull:    {scColdPull},
	scPartialPull: {scColdPull, scTensorShift},
	scOneFile:     {scColdPush},
}

// Modes: how blob bytes travel.
const (
	modeRedirect   = "redirect"    // modelxd on S3 answers 302 to presigned URLs
	modeProxy      = "proxy"       // modelxd on the local filesystem carries the bytes
	modeFloor      = "floor"       // presigned PUT/GET straight to S3, no modelx
	modeFloorWrite = "floor+write" // the floor's GETs, each written to a file: the floor of a pull
	modeFloorDisk  = "floor+disk"  // the floor's GETs, written to disk and fsynced
	modeFloorTree  = "floor+tree"  // the floor's GETs, written back into the model's files
)

type options struct {
	size         sizeFlag
	smallFiles   int
	mixedFiles   int
	mixedShard   sizeFlag
	concurrency  int
	out          string
	scenarios    string
	models       string
	modes        string
	keep         bool
	seed         uint64
	metaClients  int
	metaDuration time.Duration
	verify       bool
	prewarm      bool
	profileDir   string
	latency      time.Duration
}

func main() {
	maybeRunDelayProxy()
	opts := options{size: 512 << 20, mixedShard: 128 << 20}
	flag.Var(&opts.size, "size", "total size of the LLM-like model (units: KiB, MiB, GiB; KB, MB, GB)")
	flag.IntVar(&opts.smallFiles, "small-files", 20000, "number of small files in the many-small-files model")
	flag.IntVar(&opts.mixedFiles, "mixed-files", 5000, "number of small files in the mixed model")
	flag.Var(&opts.mixedShard, "mixed-shard", "size of each of the mixed model's 4 weight shards and of its safetensors file")
	flag.IntVar(&opts.concurrency, "j", 0, "client concurrency (0: the client's default, min(8, max(4, 2×CPUs)))")
	flag.StringVar(&opts.out, "out", "bench-results.json", "write the results as JSON here (empty: don't)")
	flag.StringVar(&opts.scenarios, "scenarios", "", "comma list of scenarios to report (default all): "+strings.Join(append(slices.Clone(transferScenarios), scFloor, scMeta), ","))
	flag.StringVar(&opts.models, "models", strings.Join(modelOrder, ","), "comma list of models: "+strings.Join(modelOrder, ", "))
	flag.StringVar(&opts.modes, "modes", "redirect,proxy", "comma list of modes: redirect (modelxd on S3, 302 to presigned URLs), proxy (modelxd on the local filesystem)")
	flag.BoolVar(&opts.keep, "keep", false, "keep the temp directory (models, pulled copies, server data and logs)")
	flag.Uint64Var(&opts.seed, "seed", 1, "seed of the synthetic models")
	flag.IntVar(&opts.metaClients, "meta-clients", 32, "concurrent clients of the metadata test")
	flag.DurationVar(&opts.metaDuration, "meta-duration", 3*time.Second, "duration of each metadata test (at most 5s)")
	flag.BoolVar(&opts.verify, "verify", true, "check every pulled tree byte for byte against its source (not timed)")
	flag.BoolVar(&opts.prewarm, "prewarm", true, "before each timed step, write and delete a scratch file of twice the model's size (at most 4 GiB), so the step's page-cache writes get memory the machine just used (see docs/benchmarks.md)")
	flag.StringVar(&opts.profileDir, "cpuprofile", "", "write a CPU profile of the benchmark process (client side) for each measured step into this directory")
	flag.DurationVar(&opts.latency, "latency", 0, "add this delay each way to every connection to the S3 server and to modelxd, through a delay proxy (0: none; the loopback has no latency)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected argument %q (it takes only flags)\n", flag.Arg(0))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, opts)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// bench holds the state of one run.
type bench struct {
	opts        options
	concurrency int
	want        map[string]bool // reported scenarios
	need        map[string]bool // run scenarios (reported ones and their prerequisites)
	root        string
	start       time.Time
	counter     *reqCounter
	phases      *phaseRecorder
	hc          *http.Client
	s3          *s3Server
	fsReg       *proc
	s3Reg       *proc
	report      *report
	proxyBlob   int64   // largest blob pushed and pulled through the fs modelxd
	metaModel   string  // model whose v1 the metadata test reads on the fs modelxd
	warmBytes   int64   // the scratch file of prewarm: twice the current model's size
	proxies     []*proc // delay proxies (-latency), stopped at the end
}

// delay puts a delay proxy in front of p when -latency is set: p's url
// becomes the proxy's, so every later client of p goes through it. The
// proxy ends with the run (b.proxies).
func (b *bench) delay(ctx context.Context, p *proc, name, healthPath string) error {
	if b.opts.latency <= 0 {
		return nil
	}
	px, err := startDelayProxy(ctx, "delay proxy for "+name, strings.TrimPrefix(p.url, "http://"), b.opts.latency,
		filepath.Join(b.root, "logs", "delay-"+name+".log"), healthPath)
	if err != nil {
		return err
	}
	b.proxies = append(b.proxies, px)
	b.logf("%s behind a delay proxy of %s each way at %s", name, b.opts.latency, px.url)
	p.url = px.url
	return nil
}

// clientDefaultConcurrency mirrors client.New's default, so the floor runs
// with the same concurrency as the client.
func clientDefaultConcurrency() int { return min(8, max(4, 2*runtime.NumCPU())) }

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

func parseSelection(opts options) (want, need map[string]bool, models, modes []string, err error) {
	all := append(slices.Clone(transferScenarios), scFloor, scMeta)
	want = map[string]bool{}
	if opts.scenarios == "" {
		for _, s := range all {
			want[s] = true
		}
	}
	for _, s := range splitList(opts.scenarios) {
		if !slices.Contains(all, s) {
			return nil, nil, nil, nil, fmt.Errorf("-scenarios: unknown %q (known: %s)", s, strings.Join(all, ", "))
		}
		want[s] = true
	}
	need = map[string]bool{}
	var add func(s string)
	add = func(s string) {
		if need[s] {
			return
		}
		need[s] = true
		for _, d := range scenarioDeps[s] {
			add(d)
		}
	}
	for s := range want {
		add(s)
	}
	for _, m := range splitList(opts.models) {
		if !slices.Contains(modelOrder, m) {
			return nil, nil, nil, nil, fmt.Errorf("-models: unknown %q (known: %s)", m, strings.Join(modelOrder, ", "))
		}
		models = append(models, m)
	}
	for _, m := range splitList(opts.modes) {
		if m != modeRedirect && m != modeProxy {
			return nil, nil, nil, nil, fmt.Errorf("-modes: unknown %q (known: redirect, proxy)", m)
		}
		modes = append(modes, m)
	}
	return want, need, models, modes, nil
}

func run(ctx context.Context, opts options) error {
	want, need, models, modes, err := parseSelection(opts)
	if err != nil {
		return err
	}
	if opts.profileDir != "" {
		if err := os.MkdirAll(opts.profileDir, 0o755); err != nil {
			return err
		}
	}
	if opts.metaDuration <= 0 || opts.metaDuration > 5*time.Second {
		return errors.New("-meta-duration must be in (0, 5s]")
	}
	b := &bench{opts: opts, want: want, need: need, start: time.Now(), counter: newReqCounter(), phases: newPhaseRecorder()}
	b.concurrency = opts.concurrency
	if b.concurrency <= 0 {
		b.concurrency = clientDefaultConcurrency()
	}
	b.hc = countingClient(client.DefaultHTTPClient(), b.counter)
	b.report = newReport(opts, b.concurrency)

	// Fail early, before generating anything, when versitygw is missing.
	needS3 := slices.Contains(modes, modeRedirect) || want[scFloor]
	if needS3 {
		if _, err := versitygwBinary(); err != nil {
			return err
		}
	}
	b.logf("measuring sha256 and chunker speed in-process")
	b.report.Hashing = measureHashing()

	if b.root, err = os.MkdirTemp("", "modelx-bench-*"); err != nil {
		return err
	}
	if opts.keep {
		defer fmt.Fprintf(os.Stderr, "bench: kept %s\n", b.root)
	} else {
		defer os.RemoveAll(b.root)
	}
	b.logf("measuring disk write + fsync speed in %s", b.root)
	if b.report.Hashing.DiskFsyncMBps, err = measureDisk(b.root); err != nil {
		return err
	}
	logs := filepath.Join(b.root, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	defer func() {
		for _, px := range b.proxies {
			px.stop()
		}
	}()

	b.logf("building cmd/modelxd")
	bin, err := buildModelxd(b.root)
	if err != nil {
		return err
	}
	var fl *floor
	if needS3 {
		b.logf("starting versitygw")
		if b.s3, err = startVersitygw(ctx, filepath.Join(b.root, "s3"), filepath.Join(logs, "versitygw.log")); err != nil {
			return err
		}
		defer b.s3.stop()
		b.logf("versitygw pid %d at %s", b.s3.pid(), b.s3.url)
		if err := b.delay(ctx, b.s3.proc, "versitygw", "/health"); err != nil {
			return err
		}
		if slices.Contains(modes, modeRedirect) {
			st, err := s3.New(ctx, s3.Config{Endpoint: b.s3.url, Bucket: "modelx", Region: b.s3.region,
				AccessKey: b.s3.accessKey, SecretKey: b.s3.secretKey, PathStyle: true})
			if err != nil {
				return err
			}
			if err := st.CreateBucket(ctx); err != nil {
				return err
			}
			b.logf("starting modelxd on S3 with redirects")
			if b.s3Reg, err = startModelxdS3(ctx, bin, b.s3, "modelx", filepath.Join(logs, "modelxd-s3.log")); err != nil {
				return err
			}
			defer b.s3Reg.stop()
			b.logf("modelxd (S3, redirect) pid %d at %s", b.s3Reg.pid(), b.s3Reg.url)
			if err := b.delay(ctx, b.s3Reg, "modelxd-s3", "/healthz"); err != nil {
				return err
			}
		}
		if want[scFloor] {
			if fl, err = newFloor(ctx, b.s3, "floor", b.hc, b.concurrency); err != nil {
				return err
			}
		}
	}
	if slices.Contains(modes, modeProxy) || want[scMeta] {
		b.logf("starting modelxd on the local filesystem")
		if b.fsReg, err = startModelxdFS(ctx, bin, filepath.Join(b.root, "registry-fs"), filepath.Join(logs, "modelxd-fs.log")); err != nil {
			return err
		}
		defer b.fsReg.stop()
		b.logf("modelxd (fs, proxy) pid %d at %s", b.fsReg.pid(), b.fsReg.url)
		if err := b.delay(ctx, b.fsReg, "modelxd-fs", "/healthz"); err != nil {
			return err
		}
		if hwm, rss, err := b.fsReg.memory(); err == nil {
			b.report.RSS.StartHWM, b.report.RSS.StartRSS = hwm, rss
		}
	}

	needModels := want[scFloor]
	for _, sc := range transferScenarios {
		needModels = needModels || need[sc]
	}
	if !needModels {
		models = nil
	}
	for _, name := range models {
		m, err := b.generate(name)
		if err != nil {
			return err
		}
		b.warmBytes = min(2*m.Bytes, 4<<30)
		b.report.Models = append(b.report.Models, m)
		if fl != nil {
			if err := b.runFloor(ctx, fl, m); err != nil {
				return err
			}
		}
		for _, mode := range modes {
			if err := b.runTransfers(ctx, m, mode); err != nil {
				return err
			}
		}
		if !opts.keep {
			// Free the disk of this model's trees; the servers keep their data.
			t := time.Now()
			os.RemoveAll(filepath.Join(b.root, "models", name))
			for _, mode := range append(modes, modeFloorTree) {
				os.RemoveAll(filepath.Join(b.root, name+"-"+mode))
			}
			b.logf("removed the %s model's trees in %s", name, formatDuration(time.Since(t)))
		}
	}

	if b.fsReg != nil && slices.Contains(modes, modeProxy) && len(models) > 0 {
		hwm, rss, err := b.fsReg.memory()
		if err != nil {
			return err
		}
		b.report.RSS.AfterTransfersHWM, b.report.RSS.AfterTransfersRSS = hwm, rss
		b.report.RSS.LargestBlob = b.proxyBlob
		b.report.RSS.Measured = true
		b.logf("proxy modelxd: peak RSS %s after moving blobs of up to %s", formatBytes(hwm), formatBytes(b.proxyBlob))
	}
	if want[scMeta] {
		if err := b.runMeta(ctx); err != nil {
			return err
		}
		if hwm, _, err := b.fsReg.memory(); err == nil {
			b.report.RSS.AfterMetaHWM = hwm
		}
	}
	if b.s3Reg != nil {
		if hwm, _, err := b.s3Reg.memory(); err == nil {
			b.report.RSS.RedirectHWM = hwm
		}
	}

	b.report.finish()
	fmt.Print(b.report.markdown())
	if opts.out != "" {
		data, err := json.MarshalIndent(b.report, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(opts.out, append(data, '\n'), 0o644); err != nil {
			return err
		}
		b.logf("wrote %s", opts.out)
	}
	b.logf("done")
	return nil
}

// generate writes a pristine model under root/models/NAME.
func (b *bench) generate(name string) (*model, error) {
	dir := filepath.Join(b.root, "models", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	t := time.Now()
	var m *model
	var err error
	switch name {
	case "llm":
		m, err = genLLM(dir, int64(b.opts.size), b.opts.seed)
	case "small":
		m, err = genSmall(dir, b.opts.smallFiles, b.opts.seed)
	case "mixed":
		m, err = genMixed(dir, int64(b.opts.mixedShard), b.opts.mixedFiles, b.opts.seed)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s model: %w", name, err)
	}
	b.logf("generated %s model: %d files, %s, in %s", name, m.Files, formatBytes(m.Bytes), formatDuration(time.Since(t)))
	return m, nil
}

func (b *bench) runFloor(ctx context.Context, fl *floor, m *model) error {
	files, err := listFiles(m.Dir)
	if err != nil {
		return err
	}
	objs := planFloor(m.Name, files)
	var total int64
	for _, o := range objs {
		total += o.size
	}
	d, c, cpu, err := b.measure(m.Name+"-floor-push", "", func() error {
		_, err := fl.push(ctx, objs)
		return err
	})
	if err != nil {
		return fmt.Errorf("floor push %s: %w", m.Name, err)
	}
	note := fmt.Sprintf("%d objects ≥ 8 MiB; sha256 + presigned PUT with x-amz-checksum-sha256", len(objs))
	b.report.Floors = append(b.report.Floors, floorEntry{Model: m.Name, Op: "push", floorResult: floorResult{Seconds: d.Seconds(), Bytes: total, Objects: len(objs), Requests: c.Storage}})
	b.addRow(row{Scenario: scColdPush, Mode: modeFloor, Model: m.Name, Seconds: d.Seconds(), LogicalBytes: m.Bytes, MovedBytes: total,
		BlobsMoved: len(objs), counts: c, CPU: cpu, Notes: note}, true)

	d, c, cpu, err = b.measure(m.Name+"-floor-pull", "", func() error {
		_, err := fl.pull(ctx, objs, floorSink{})
		return err
	})
	if err != nil {
		return fmt.Errorf("floor pull %s: %w", m.Name, err)
	}
	b.report.Floors = append(b.report.Floors, floorEntry{Model: m.Name, Op: "pull", floorResult: floorResult{Seconds: d.Seconds(), Bytes: total, Objects: len(objs), Requests: c.Storage}})
	b.addRow(row{Scenario: scColdPull, Mode: modeFloor, Model: m.Name, Seconds: d.Seconds(), LogicalBytes: m.Bytes, MovedBytes: total,
		BlobsMoved: len(objs), counts: c, CPU: cpu, Notes: fmt.Sprintf("%d presigned GETs, sha256 while reading, bytes discarded", len(objs))}, true)

	// The same pull writing every object to a file, as the floor of
	// issue 18 defines a pull ("presigned GETs hashed and written"): the
	// floor of the bars of cold pulls. Then with one fsync per object: not
	// the floor of the bars, but what a pull that keeps its bytes durably
	// cannot beat.
	for _, v := range []struct {
		mode, op, step, note string
		sync                 bool
	}{
		{modeFloorWrite, "pull+write", "floor-write-pull", "as the floor, and each object written to a file (no fsync)", false},
		{modeFloorDisk, "pull+disk", "floor-disk-pull", "as the floor, and each object written to a file and fsynced once", true},
	} {
		dir := filepath.Join(b.root, v.step+"-"+m.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		d, c, cpu, err = b.measure(m.Name+"-"+v.step, "", func() error {
			_, err := fl.pull(ctx, objs, floorSink{objectDir: dir, sync: v.sync})
			return err
		})
		if err != nil {
			return fmt.Errorf("%s %s: %w", v.step, m.Name, err)
		}
		b.report.Floors = append(b.report.Floors, floorEntry{Model: m.Name, Op: v.op, floorResult: floorResult{Seconds: d.Seconds(), Bytes: total, Objects: len(objs), Requests: c.Storage}})
		b.addRow(row{Scenario: scColdPull, Mode: v.mode, Model: m.Name, Seconds: d.Seconds(), LogicalBytes: m.Bytes, MovedBytes: total,
			BlobsMoved: len(objs), counts: c, CPU: cpu, Notes: v.note}, true)
	}

	// The same pull writing the model's files back: what a pull that
	// produces the tree cannot beat, whatever its format.
	// Kept until the model's other trees are removed: deleting 20,000
	// files here would slow the creates of the pulls that follow (ext4
	// skips recently freed inodes when it allocates).
	tree := filepath.Join(b.root, m.Name+"-"+modeFloorTree)
	d, c, cpu, err = b.measure(m.Name+"-floor-tree-pull", "", func() error {
		_, err := fl.pull(ctx, objs, floorSink{treeDir: tree, modelDir: m.Dir})
		return err
	})
	if err != nil {
		return fmt.Errorf("floor pull into the tree %s: %w", m.Name, err)
	}
	if err := compareTrees(m.Dir, tree, nil); err != nil {
		return fmt.Errorf("floor pull into the tree %s: %w", m.Name, err)
	}
	b.report.Floors = append(b.report.Floors, floorEntry{Model: m.Name, Op: "pull+tree", floorResult: floorResult{Seconds: d.Seconds(), Bytes: total, Objects: len(objs), Requests: c.Storage}})
	b.addRow(row{Scenario: scColdPull, Mode: modeFloorTree, Model: m.Name, Seconds: d.Seconds(), LogicalBytes: m.Bytes, MovedBytes: total,
		BlobsMoved: len(objs), counts: c, CPU: cpu, Notes: fmt.Sprintf("as the floor, and the bytes written back into the model's %d files (no temp files, no fsync)", m.Files)}, true)
	return nil
}

// syncDisks flushes dirty pages before a measurement, so one scenario does
// not pay for the writeback of the previous one. Returns how long it took.
func syncDisks() time.Duration {
	t := time.Now()
	syscall.Sync()
	return time.Since(t)
}

// cpuNow reads the CPU time used so far by this process and the servers.
func (b *bench) cpuNow() cpuUse {
	reg := b.fsReg.cpu() + b.s3Reg.cpu()
	var s3t time.Duration
	if b.s3 != nil {
		s3t = b.s3.cpu()
	}
	return cpuUse{Client: selfCPU().Seconds(), Modelxd: reg.Seconds(), S3: s3t.Seconds()}
}

func (b *bench) addRow(r row, report bool) {
	r.LogicalMBps = mbPerSec(r.LogicalBytes, r.Seconds)
	r.MovedMBps = mbPerSec(r.MovedBytes, r.Seconds)
	b.logf("%-17s %-8s %-5s %9s  moved %10s in %4d blobs, %5d+%-5d requests  %s",
		r.Scenario, r.Mode, r.Model, formatDuration(time.Duration(r.Seconds*float64(time.Second))), formatBytes(r.MovedBytes),
		r.BlobsMoved, r.Registry, r.Storage, r.Notes)
	if report {
		b.report.Rows = append(b.report.Rows, r)
	}
}
