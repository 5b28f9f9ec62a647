package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"modelx.io/modelx/client"
)

// TestFinishTransfer: one ending for push, pull and copy shows the result's
// figures in the progress summary (none without a result), writes them to
// the metrics file, and keeps the transfer's error ahead of the file's.
func TestFinishTransfer(t *testing.T) {
	ref, err := client.ParseReference("https://reg.example/nlp/bert:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	failed := errors.New("connection reset")
	metrics := filepath.Join(t.TempDir(), "modelx.prom")
	for _, tc := range []struct {
		name                string
		figures             *transferFigures
		err                 error
		metricsFile         string
		wantErr             error
		wantMoved, wantSkip int64
		wantInFile          []string
	}{
		{name: "result", figures: transferred(10, client.Transfer{SkippedBytes: 20, BlobsTransferred: 1, BlobsSkipped: 2, DurationSeconds: 0.5}),
			metricsFile: metrics, wantMoved: 10, wantSkip: 20,
			wantInFile: []string{`modelx_transfer_success{operation="pull",reference="https://reg.example/nlp/bert@v1"} 1`,
				`state="moved"} 10`, `state="skipped"} 20`, `state="moved"} 1`, `state="skipped"} 2`, `} 0.5`}},
		{name: "no result", err: failed, metricsFile: metrics, wantErr: failed, wantMoved: -1, wantSkip: -1,
			wantInFile: []string{`modelx_transfer_success{operation="pull",reference="https://reg.example/nlp/bert@v1"} 0`, `state="moved"} 0`}},
		{name: "no metrics file", figures: &transferFigures{movedBytes: 3, skippedBytes: 4}, err: failed, wantErr: failed, wantMoved: 3, wantSkip: 4},
		{name: "metrics file fails", figures: &transferFigures{}, metricsFile: filepath.Join(t.TempDir(), "missing", "m.prom"), wantErr: os.ErrNotExist},
		{name: "transfer and metrics file fail", err: failed, metricsFile: filepath.Join(t.TempDir(), "missing", "m.prom"), wantErr: failed, wantMoved: -1, wantSkip: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(metrics)
			var a app
			stops := 0
			var moved, skipped int64
			a.stop = func(_ error, _ bool, m, s int64) { stops, moved, skipped = stops+1, m, s }
			err := a.finishTransfer(context.Background(), "pull", ref, tc.figures, tc.err, tc.metricsFile)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
			if stops != 1 || moved != tc.wantMoved || skipped != tc.wantSkip {
				t.Errorf("progress stopped %d times with %d moved, %d skipped; want once with %d, %d", stops, moved, skipped, tc.wantMoved, tc.wantSkip)
			}
			if len(tc.wantInFile) == 0 {
				return
			}
			data, err := os.ReadFile(metrics)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range tc.wantInFile {
				if !strings.Contains(string(data), want) {
					t.Errorf("metrics file lacks %q:\n%s", want, data)
				}
			}
		})
	}
}
