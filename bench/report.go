package main

import (
	"bufio"
	"cmp"
	"crypto/sha256"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"modelx.io/modelx/client/chunker"
)

// cpuUse is CPU time in seconds, per process.
type cpuUse struct {
	Client  float64 `json:"client"`  // the benchmark process: the modelx client or the floor
	Modelxd float64 `json:"modelxd"` // the registry
	S3      float64 `json:"s3"`      // versitygw
}

// sub returns c - o, rounded to milliseconds.
func (c cpuUse) sub(o cpuUse) cpuUse {
	ms := func(s float64) float64 { return math.Round(s*1000) / 1000 }
	return cpuUse{Client: ms(c.Client - o.Client), Modelxd: ms(c.Modelxd - o.Modelxd), S3: ms(c.S3 - o.S3)}
}

// row is one measured transfer.
type row struct {
	Scenario     string  `json:"scenario"`
	Mode         string  `json:"mode"`
	Model        string  `json:"model"`
	Seconds      float64 `json:"seconds"`
	LogicalBytes int64   `json:"logical_bytes"`
	MovedBytes   int64   `json:"moved_bytes"`
	LogicalMBps  float64 `json:"logical_mb_per_s"`
	MovedMBps    float64 `json:"moved_mb_per_s"`
	BlobsMoved   int     `json:"blobs_moved"`
	BlobsSkipped int     `json:"blobs_skipped"`
	counts
	FloorRatio *float64  `json:"floor_ratio,omitempty"`
	CPU        cpuUse    `json:"cpu_seconds"`
	Verified   bool      `json:"verified,omitempty"`
	Diff       *blobDiff `json:"diff,omitempty"`
	Notes      string    `json:"notes,omitempty"`
	// Phases split the client's time (its phase spans); see phases.go.
	Phases []phase `json:"phases,omitempty"`
}

// floorEntry is one floor measurement of one model.
type floorEntry struct {
	Model string `json:"model"`
	Op    string `json:"op"`
	floorResult
}

// hashing is the single-core speed of the client's hashing work.
type hashing struct {
	SHA256MBps        float64 `json:"sha256_mb_per_s"`
	ChunkerMBps       float64 `json:"chunker_mb_per_s"`
	ChunkerSHA256MBps float64 `json:"chunker_plus_sha256_mb_per_s"`
	DiskFsyncMBps     float64 `json:"disk_write_fsync_mb_per_s"`
}

type machine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model"`
	MemTotal   int64  `json:"mem_total_bytes"`
	Kernel     string `json:"kernel"`
	GoVersion  string `json:"go_version"`
	Date       string `json:"date"`
	// LoadStart and LoadEnd are /proc/loadavg at the start and the end of
	// the run: anything else running on the machine shows here.
	LoadStart string `json:"loadavg_start"`
	LoadEnd   string `json:"loadavg_end"`
}

// loadavg returns the 1, 5 and 15 minute load averages.
func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

type settings struct {
	Size         int64    `json:"size"`
	SmallFiles   int      `json:"small_files"`
	MixedFiles   int      `json:"mixed_files"`
	MixedShard   int64    `json:"mixed_shard"`
	Concurrency  int      `json:"concurrency"`
	Seed         uint64   `json:"seed"`
	Scenarios    string   `json:"scenarios"`
	Models       string   `json:"models"`
	Modes        string   `json:"modes"`
	MetaClients  int      `json:"meta_clients"`
	MetaDuration string   `json:"meta_duration"`
	Latency      string   `json:"latency,omitempty"`
	Args         []string `json:"args"`
}

type rssReport struct {
	Measured          bool  `json:"measured"`
	StartHWM          int64 `json:"start_hwm_bytes"`
	StartRSS          int64 `json:"start_rss_bytes"`
	AfterTransfersHWM int64 `json:"after_transfers_hwm_bytes"`
	AfterTransfersRSS int64 `json:"after_transfers_rss_bytes"`
	AfterMetaHWM      int64 `json:"after_meta_hwm_bytes,omitempty"`
	RedirectHWM       int64 `json:"redirect_modelxd_hwm_bytes,omitempty"`
	LargestBlob       int64 `json:"largest_blob_bytes"`
}

// bar is one target of the issue and whether this run meets it.
type bar struct {
	Bar      string `json:"bar"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      *bool  `json:"met"` // nil: not measured in this run
}

// report is everything a run measured; it is printed as Markdown and
// written as JSON.
type report struct {
	Machine           machine      `json:"machine"`
	Settings          settings     `json:"settings"`
	Hashing           hashing      `json:"hashing"`
	Models            []*model     `json:"models"`
	Rows              []row        `json:"transfers"`
	Floors            []floorEntry `json:"floors"`
	Meta              []metaResult `json:"metadata"`
	MetaManifestBytes int64        `json:"metadata_manifest_bytes,omitempty"`
	RSS               rssReport    `json:"proxy_rss"`
	Bars              []bar        `json:"bars"`
}

func newReport(opts options, concurrency int) *report {
	r := &report{Machine: machineInfo()}
	r.Settings = settings{Size: int64(opts.size), SmallFiles: opts.smallFiles,
		MixedFiles: opts.mixedFiles, MixedShard: int64(opts.mixedShard), Concurrency: concurrency, Seed: opts.seed,
		Scenarios: opts.scenarios, Models: opts.models, Modes: opts.modes, MetaClients: opts.metaClients,
		MetaDuration: opts.metaDuration.String(), Args: os.Args[1:]}
	if opts.latency > 0 {
		r.Settings.Latency = opts.latency.String()
	}
	if r.Settings.Scenarios == "" {
		r.Settings.Scenarios = "all"
	}
	return r
}

func machineInfo() machine {
	m := machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(),
		Date: time.Now().UTC().Format(time.RFC3339), LoadStart: loadavg()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				f := strings.Fields(v)
				if len(f) == 2 {
					n, _ := strconv.ParseInt(f[0], 10, 64)
					m.MemTotal = n << 10
				}
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	return m
}

// measureHashing times, on one core, sha256 and the content-defined
// chunker over 256 MiB each, alone and together (what push does to a large
// file that is not in the hash cache). A first pass over 64 MiB warms the
// heap, so the figures are steady-state speeds.
func measureHashing() hashing {
	data := make([]byte, 64<<20)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(data)
	var h hashing
	sha := func(total int) float64 {
		start := time.Now()
		sum := sha256.New()
		for i := 0; i < total; i += 1 << 20 {
			sum.Write(data[i%len(data) : i%len(data)+1<<20])
		}
		return mbPerSec(int64(total), time.Since(start).Seconds())
	}
	// As push does: 1 MiB blocks fed to the boundary search and, up to
	// each boundary, to the chunk's sha256.
	chunk := func(total int64, hash bool) float64 {
		start := time.Now()
		sp, err := chunker.NewSplitter(chunker.DefaultParams)
		if err != nil {
			return 0
		}
		sum := sha256.New()
		for i := int64(0); i < total; i += 1 << 20 {
			block := data[i%int64(len(data)) : i%int64(len(data))+1<<20]
			for len(block) > 0 {
				n, cut := sp.Split(block)
				if hash {
					sum.Write(block[:n])
					if cut {
						sum.Sum(nil)
						sum.Reset()
					}
				}
				block = block[n:]
			}
		}
		return mbPerSec(total, time.Since(start).Seconds())
	}
	sha(64 << 20)
	chunk(64<<20, true)
	h.SHA256MBps = sha(256 << 20)
	h.ChunkerMBps = chunk(256<<20, false)
	h.ChunkerSHA256MBps = chunk(256<<20, true)
	return h
}

// measureDisk writes 256 MiB of random bytes to a file in dir in 1 MiB
// writes, fsyncs it, and returns the rate in MB/s.
func measureDisk(dir string) (float64, error) {
	const total = 256 << 20
	buf := make([]byte, 1<<20)
	_, _ = rand.NewChaCha8([32]byte{2}).Read(buf)
	f, err := os.CreateTemp(dir, "disk-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	syscall.Sync()
	start := time.Now()
	for i := 0; i < total; i += len(buf) {
		buf[0]++ // no two blocks alike
		if _, err := f.Write(buf); err != nil {
			return 0, err
		}
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return mbPerSec(total, time.Since(start).Seconds()), nil
}

var (
	modelOrder    = []string{"llm", "mixed", "small"}
	modeOrder     = []string{modeFloor, modeFloorWrite, modeFloorDisk, modeFloorTree, modeRedirect, modeProxy}
	pushScenarios = []string{scColdPush, scNoopPush, scMountPush, scSmallChange, scTensorShift}
)

// finish sorts the rows, computes the ratios to the floor and the bars.
func (r *report) finish() {
	r.Machine.LoadEnd = loadavg()
	slices.SortStableFunc(r.Rows, func(a, b row) int {
		if d := slices.Index(modelOrder, a.Model) - slices.Index(modelOrder, b.Model); d != 0 {
			return d
		}
		if d := slices.Index(transferScenarios, a.Scenario) - slices.Index(transferScenarios, b.Scenario); d != 0 {
			return d
		}
		return slices.Index(modeOrder, a.Mode) - slices.Index(modeOrder, b.Mode)
	})
	for i := range r.Rows {
		row := &r.Rows[i]
		if row.Mode != modeRedirect && !isFloor(row.Mode) {
			continue
		}
		// A pull's floor writes what it fetches (issue 18's floor); a run
		// from before that floor existed has only the discarding one.
		ops := []string{"pull+write", "pull"}
		if slices.Contains(pushScenarios, row.Scenario) {
			ops = []string{"push"}
		}
	floors:
		for _, op := range ops {
			for _, f := range r.Floors {
				if f.Model == row.Model && f.Op == op && f.Seconds > 0 {
					ratio := row.Seconds / f.Seconds
					row.FloorRatio = &ratio
					break floors
				}
			}
		}
	}
	r.Bars = r.bars()
}

func (r *report) find(scenario, mode, model string) *row {
	for i := range r.Rows {
		if x := &r.Rows[i]; x.Scenario == scenario && x.Mode == mode && x.Model == model {
			return x
		}
	}
	return nil
}

func (r *report) rowsOf(scenario string) []*row {
	var out []*row
	for i := range r.Rows {
		if x := &r.Rows[i]; x.Scenario == scenario && !isFloor(x.Mode) {
			out = append(out, x)
		}
	}
	return out
}

func ptr(b bool) *bool { return &b }

// floorModes are the modes of the floor's rows.
var floorModes = []string{modeFloor, modeFloorWrite, modeFloorDisk, modeFloorTree}

func isFloor(mode string) bool { return slices.Contains(floorModes, mode) }

// bars checks the targets against the rows.
func (r *report) bars() []bar {
	var out []bar
	for _, sc := range []string{scColdPush, scColdPull} {
		for _, m := range modelOrder {
			if b, ok := r.coldBar(sc, m); ok {
				out = append(out, b)
			}
		}
	}
	// Incremental steps of the mixed model (5,000 small files beside large
	// ones) have absolute targets; the other models' rows are shown.
	for _, t := range []struct {
		scenario, name string
		limit          float64
	}{
		{scNoopPush, "noop-push", 0.05},
		{scNoopPull, "noop-pull", 0.05},
		{scSmallChange, "one small file changed", 0.15},
	} {
		b := bar{Bar: t.name + ", mixed", Target: fmt.Sprintf("≤ %s", secs(t.limit)), Measured: "not measured"}
		var parts []string
		met := true
		measured := false
		for _, x := range r.rowsOf(t.scenario) {
			parts = append(parts, fmt.Sprintf("%s/%s %s", x.Model, x.Mode, secs(x.Seconds)))
			if x.Model == "mixed" {
				measured = true
				met = met && x.Seconds <= t.limit
			}
		}
		if len(parts) > 0 {
			b.Measured = strings.Join(parts, ", ")
		}
		if measured {
			b.Met = ptr(met)
		}
		out = append(out, b)
	}
	out = append(out, r.rowsBar(scSmallChange, "one small file changed", "one pack sent", "; ", func(x *row) (string, bool) {
		return fmt.Sprintf("%d blob(s) sent, %d new pack(s)", x.BlobsMoved, x.Diff.NewPacks), x.BlobsMoved == 1 && x.Diff.NewPacks == 1 && x.Diff.NewBlobs == 1
	}))
	out = append(out, r.rowsBar(scTensorShift, "tensor changed, header shifted", "tensor's chunks + ≤ 2 chunks sent", "; ", func(x *row) (string, bool) {
		extra := x.BlobsMoved - x.Diff.TensorChunks
		return fmt.Sprintf("%d sent = %d on the tensor + %d", x.BlobsMoved, x.Diff.TensorChunks, extra), extra <= 2 && x.BlobsMoved == x.Diff.NewBlobs
	}))
	{
		b := bar{Bar: "proxy-mode modelxd peak RSS", Target: "< 150 MiB", Measured: "not measured"}
		if r.RSS.Measured {
			b.Measured = fmt.Sprintf("%s VmHWM (blobs up to %s pushed and pulled through it)", formatBytes(r.RSS.AfterTransfersHWM), formatBytes(r.RSS.LargestBlob))
			b.Met = ptr(r.RSS.AfterTransfersHWM < 150<<20)
		}
		out = append(out, b)
	}
	for _, op := range []string{"HEAD blob", "GET manifest"} {
		b := bar{Bar: op, Target: "≥ 10,000 req/s, p99 < 10 ms", Measured: "not measured"}
		for _, m := range r.Meta {
			if m.Op == op {
				b.Measured = fmt.Sprintf("%.0f req/s, p99 %.2f ms (%d clients)", m.PerSecond, m.P99Ms, m.Clients)
				b.Met = ptr(m.PerSecond >= 10000 && m.P99Ms < 10 && m.Errors == 0)
			}
		}
		out = append(out, b)
	}
	return out
}

// coldBar is the target of a cold push or pull of model in redirect mode:
// ≤ 1.15× the floor (for a pull, the floor+write pull: issue 18 defines
// the floor's pull as GETs hashed and written), but for the
// many-small-files model, where creating 20,000 files or compressing them
// is the work itself, ≤ 2× the floor+tree pull and ≤ 2× the floor push.
func (r *report) coldBar(sc, m string) (bar, bool) {
	limit, base := 1.15, modeFloor
	if sc == scColdPull {
		base = modeFloorWrite
	}
	if m == "small" {
		limit = 2
		if sc == scColdPull {
			base = modeFloorTree
		}
	}
	b := bar{Bar: fmt.Sprintf("%s, redirect, %s", sc, m), Target: fmt.Sprintf("≤ %.2f× %s", limit, base), Measured: "not measured"}
	x, fl := r.find(sc, modeRedirect, m), r.find(sc, base, m)
	switch {
	case x != nil && fl != nil && fl.Seconds > 0:
		ratio := x.Seconds / fl.Seconds
		b.Measured = fmt.Sprintf("%.2f× (%s vs %s %s)", ratio, secs(x.Seconds), base, secs(fl.Seconds))
		for _, other := range floorModes {
			if o := r.find(sc, other, m); o != nil && other != base && o.Seconds > 0 {
				b.Measured += fmt.Sprintf("; %.2f× the %s (%s)", x.Seconds/o.Seconds, other, secs(o.Seconds))
			}
		}
		b.Met = ptr(ratio <= limit)
	case x != nil:
		b.Measured = secs(x.Seconds) + "; the " + base + " was not measured in this run"
	case r.find(sc, modeFloor, m) == nil:
		return b, false
	}
	return b, true
}

// rowsBar is the bar of a target every row of scenario must meet: check
// says what a row measured and whether it meets the target; the parts are
// joined with sep, each after the row's model and mode.
func (r *report) rowsBar(scenario, name, target, sep string, check func(x *row) (string, bool)) bar {
	b := bar{Bar: name, Target: target, Measured: "not measured"}
	rows := r.rowsOf(scenario)
	if len(rows) == 0 {
		return b
	}
	var parts []string
	ok := true
	for _, x := range rows {
		part, met := check(x)
		parts = append(parts, fmt.Sprintf("%s/%s %s", x.Model, x.Mode, part))
		ok = ok && met
	}
	b.Measured, b.Met = strings.Join(parts, sep), ptr(ok)
	return b
}

func secs(s float64) string { return formatDuration(time.Duration(s * float64(time.Second))) }

func rate(v float64) string {
	switch {
	case v == 0:
		return "–"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

// markdown renders the report.
func (r *report) markdown() string {
	var b strings.Builder
	mc := r.Machine
	fmt.Fprintf(&b, "## modelx benchmark\n\n")
	fmt.Fprintf(&b, "- machine: %d CPUs (%s), %s RAM, Linux %s\n", mc.CPUs, mc.CPUModel, formatBytes(mc.MemTotal), mc.Kernel)
	fmt.Fprintf(&b, "- Go: %s, GOMAXPROCS %d; date: %s; load average %s at start, %s at end\n", mc.GoVersion, mc.GOMAXPROCS, mc.Date, mc.LoadStart, mc.LoadEnd)
	s := r.Settings
	fmt.Fprintf(&b, "- settings: -size %s, -small-files %d, -mixed-files %d, -mixed-shard %s, -j %d, -seed %d, scenarios %s, models %s, modes %s\n",
		formatBytes(s.Size), s.SmallFiles, s.MixedFiles, formatBytes(s.MixedShard), s.Concurrency, s.Seed, s.Scenarios, s.Models, s.Modes)
	if d, err := time.ParseDuration(s.Latency); err == nil && d > 0 {
		fmt.Fprintf(&b, "- latency: every connection to the S3 server and to modelxd goes through a delay proxy adding %s each way (a %s round trip)\n", d, 2*d)
	}
	for _, m := range r.Models {
		fmt.Fprintf(&b, "- model %s: %d files, %s (largest file %s)", m.Name, m.Files, formatBytes(m.Bytes), formatBytes(m.Largest))
		if m.ManifestBytes > 0 {
			fmt.Fprintf(&b, "; v1 manifest %s", formatBytes(m.ManifestBytes))
		}
		b.WriteString("\n")
	}
	h := r.Hashing
	fmt.Fprintf(&b, "- one core, in-process: sha256 %.0f MB/s; chunker %.0f MB/s; chunker + sha256 (push of an uncached large file) %.0f MB/s\n",
		h.SHA256MBps, h.ChunkerMBps, h.ChunkerSHA256MBps)
	fmt.Fprintf(&b, "- disk (temp dir): 256 MiB written and fsynced at %.0f MB/s\n\n", h.DiskFsyncMBps)

	if len(r.Rows) > 0 {
		fmt.Fprintf(&b, "### Transfers\n\n")
		header := []string{"scenario", "mode", "model", "time", "logical MB/s", "moved MB/s", "bytes moved", "blobs", "requests (registry + S3)", "× floor", "CPU s (client/modelxd/S3)", "notes"}
		right := []bool{false, false, false, true, true, true, true, true, true, true, true, false}
		var rows [][]string
		for _, x := range r.Rows {
			ratio := ""
			if x.FloorRatio != nil {
				ratio = fmt.Sprintf("%.2f×", *x.FloorRatio)
			}
			rows = append(rows, []string{x.Scenario, x.Mode, x.Model, secs(x.Seconds), rate(x.LogicalMBps), rate(x.MovedMBps),
				formatBytes(x.MovedBytes), strconv.Itoa(x.BlobsMoved), fmt.Sprintf("%d + %d", x.Registry, x.Storage), ratio,
				fmt.Sprintf("%.1f / %.1f / %.1f", x.CPU.Client, x.CPU.Modelxd, x.CPU.S3), x.Notes})
		}
		b.WriteString(markdownTable(header, rows, right))
		fmt.Fprintf(&b, "\nMB/s is 10⁶ bytes per second. *logical* divides the model's bytes (the selected file's for pull-one-file) by the time; "+
			"*moved* divides the bytes the client sent or received (PushResult.UploadedBytes, PullResult.DownloadedBytes). "+
			"*× floor* is the time over the floor's time for the same model and direction; "+
			"the floor moves the same bytes as objects of 8 MiB or more with presigned PUTs (x-amz-checksum-sha256, sha256 computed just before each PUT) "+
			"and presigned GETs hashed and discarded, at the client's concurrency; *floor+write* also writes each object to a file (issue 18's floor of a pull, "+
			"and the one a pull's × floor divides by); *floor+disk* also fsyncs each file once; "+
			"*floor+tree* instead writes the bytes back into the model's files (created in place, no temp files, no fsync). "+
			"Requests are counted by a RoundTripper in the client's http.Client. "+
			"CPU is the CPU time each process used during the scenario (%d cores in all). "+
			"Every pulled tree was compared byte for byte with its source (not timed).\n\n", mc.CPUs)
	}

	if split := phaseRows(r.Rows); len(split) > 0 {
		fmt.Fprintf(&b, "### Where the client's time goes (redirect mode)\n\n")
		b.WriteString(markdownTable([]string{"scenario", "model", "time", "phases"}, split, []bool{false, false, true, false}))
		fmt.Fprintf(&b, "\nEach phase is the total of the client's spans of that name (modelx.push.*, modelx.pull.*); "+
			"phases in one line may overlap (the push's *current* manifest is fetched while it scans, a pull's *cache.load* runs beside *manifest*).\n\n")
	}

	if len(r.Meta) > 0 {
		fmt.Fprintf(&b, "### Registry metadata (modelxd on the local filesystem, manifest of %s)\n\n", formatBytes(r.MetaManifestBytes))
		var rows [][]string
		for _, m := range r.Meta {
			rows = append(rows, []string{m.Op, strconv.Itoa(m.Clients), secs(m.Seconds), strconv.Itoa(m.Requests), fmt.Sprintf("%.0f", m.PerSecond),
				fmt.Sprintf("%.2f ms", m.P50Ms), fmt.Sprintf("%.2f ms", m.P99Ms), fmt.Sprintf("%.1f ms", m.MaxMs), strconv.Itoa(m.Errors),
				fmt.Sprintf("%.1f / %.1f", m.ServerCPUs, m.ClientCPUs)})
		}
		b.WriteString(markdownTable([]string{"request", "clients", "time", "requests", "req/s", "p50", "p99", "max", "errors", "CPU s (modelxd/load)"},
			rows, []bool{false, true, true, true, true, true, true, true, true, true}))
		b.WriteString("\nThe load generator runs on the same cores as modelxd.\n\n")
	}

	if r.RSS.Measured {
		fmt.Fprintf(&b, "### Proxy-mode memory\n\n")
		fmt.Fprintf(&b, "- modelxd on the local filesystem: peak RSS (VmHWM) %s after every proxy-mode push and pull (blobs up to %s); %s at start",
			formatBytes(r.RSS.AfterTransfersHWM), formatBytes(r.RSS.LargestBlob), formatBytes(r.RSS.StartHWM))
		if r.RSS.AfterMetaHWM > 0 {
			fmt.Fprintf(&b, "; %s after the metadata test", formatBytes(r.RSS.AfterMetaHWM))
		}
		b.WriteString("\n")
		if r.RSS.RedirectHWM > 0 {
			fmt.Fprintf(&b, "- modelxd on S3 with redirects: peak RSS %s\n", formatBytes(r.RSS.RedirectHWM))
		}
		b.WriteString("\n")
	}

	if len(r.Bars) > 0 {
		fmt.Fprintf(&b, "### Bars\n\n")
		var rows [][]string
		for _, x := range r.Bars {
			met := "not measured"
			if x.Met != nil {
				met = "no"
				if *x.Met {
					met = "yes"
				}
			}
			rows = append(rows, []string{x.Bar, x.Target, x.Measured, met})
		}
		b.WriteString(markdownTable([]string{"bar", "target", "measured", "met"}, rows, nil))
	}
	return b.String()
}

// phaseRows lists the phase split of every redirect-mode row: the phases
// of at least 1% of the step's time, longest first.
func phaseRows(rows []row) [][]string {
	var out [][]string
	for _, x := range rows {
		if x.Mode != modeRedirect || len(x.Phases) == 0 {
			continue
		}
		ph := slices.Clone(x.Phases)
		slices.SortStableFunc(ph, func(a, b phase) int { return cmp.Compare(b.Seconds, a.Seconds) })
		var parts []string
		for _, p := range ph {
			if p.Name == "push" || p.Name == "pull" || p.Seconds < x.Seconds/100 {
				continue
			}
			parts = append(parts, p.Name+" "+secs(p.Seconds))
		}
		out = append(out, []string{x.Scenario, x.Model, secs(x.Seconds), strings.Join(parts, ", ")})
	}
	return out
}
