package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// transferFigures are what a transfer reports: its progress summary shows
// the bytes, and a push's or pull's metrics file all of them.
type transferFigures struct {
	operation    string // push, pull or copy
	reference    string
	movedBytes   int64
	skippedBytes int64
	movedBlobs   int
	skippedBlobs int
	seconds      float64
	err          error
}

// writeMetricsFile writes the figures in the Prometheus text format, for a
// textfile collector or a sidecar that an init container leaves them to.
// The file is replaced atomically, so a reader never sees half of it; a
// failed transfer writes modelx_transfer_success 0.
func writeMetricsFile(path string, f transferFigures) error {
	labels := fmt.Sprintf(`operation=%q,reference=%q`, f.operation, escapeLabel(f.reference))
	success := 1
	if f.err != nil {
		success = 0
	}
	var b strings.Builder
	series := func(name, help, typ, extra string, v any) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		fmt.Fprintf(&b, "%s{%s%s} %v\n", name, labels, extra, v)
	}
	series("modelx_transfer_success", "Whether the last modelx transfer succeeded (1) or failed (0).", "gauge", "", success)
	fmt.Fprintf(&b, "# HELP modelx_transfer_bytes Bytes of the last transfer: sent or received (moved), or already in place (skipped).\n# TYPE modelx_transfer_bytes gauge\n")
	fmt.Fprintf(&b, "modelx_transfer_bytes{%s,state=\"moved\"} %d\n", labels, f.movedBytes)
	fmt.Fprintf(&b, "modelx_transfer_bytes{%s,state=\"skipped\"} %d\n", labels, f.skippedBytes)
	fmt.Fprintf(&b, "# HELP modelx_transfer_blobs Blobs of the last transfer, moved or skipped.\n# TYPE modelx_transfer_blobs gauge\n")
	fmt.Fprintf(&b, "modelx_transfer_blobs{%s,state=\"moved\"} %d\n", labels, f.movedBlobs)
	fmt.Fprintf(&b, "modelx_transfer_blobs{%s,state=\"skipped\"} %d\n", labels, f.skippedBlobs)
	series("modelx_transfer_duration_seconds", "Duration of the last transfer.", "gauge", "", f.seconds)
	series("modelx_transfer_timestamp_seconds", "When the last transfer ended (Unix time).", "gauge", "", time.Now().Unix())

	tmp, err := os.CreateTemp(filepath.Dir(path), ".modelx-metrics-*")
	if err != nil {
		return fmt.Errorf("--metrics-file: %w", err)
	}
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("--metrics-file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("--metrics-file: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("--metrics-file: %w", err)
	}
	return nil
}

// escapeLabel prepares a label value for %q: Prometheus escapes only
// backslash, double quote and newline, which %q escapes the same way; other
// control characters are dropped.
func escapeLabel(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' {
			return -1
		}
		return r
	}, s)
}
