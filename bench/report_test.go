package main

import (
	"reflect"
	"testing"
)

// TestRowBars: the bars every row of a scenario must meet list each row's
// figures after its model and mode, and are met only when every row is;
// a scenario without rows is not measured.
func TestRowBars(t *testing.T) {
	r := &report{Rows: []row{
		{Scenario: scNoopPush, Mode: modeRedirect, Model: "llm", Seconds: 0.2},
		{Scenario: scNoopPush, Mode: modeProxy, Model: "llm", Seconds: 0.3},
		{Scenario: scNoopPush, Mode: modeFloor, Model: "llm", Seconds: 9}, // floors are not rows of a bar
		{Scenario: scSmallChange, Mode: modeRedirect, Model: "llm", BlobsMoved: 1, Diff: &blobDiff{NewBlobs: 1, NewPacks: 1}},
		{Scenario: scSmallChange, Mode: modeProxy, Model: "llm", BlobsMoved: 2, Diff: &blobDiff{NewBlobs: 2, NewPacks: 1}},
		{Scenario: scTensorShift, Mode: modeRedirect, Model: "llm", BlobsMoved: 5, Diff: &blobDiff{NewBlobs: 5, TensorChunks: 3}},
	}}
	yes, no := true, false
	want := []bar{
		{Bar: scNoopPush, Target: "well under a second (< 0.5 s)", Measured: "llm/redirect " + secs(0.2) + ", llm/proxy " + secs(0.3), Met: &yes},
		{Bar: scNoopPull, Target: "well under a second (< 0.5 s)", Measured: "not measured"},
		{Bar: "one small file changed", Target: "one pack sent", Measured: "llm/redirect 1 blob(s) sent, 1 new pack(s); llm/proxy 2 blob(s) sent, 1 new pack(s)", Met: &no},
		{Bar: "tensor changed, header shifted", Target: "tensor's chunks + ≤ 2 chunks sent", Measured: "llm/redirect 5 sent = 3 on the tensor + 2", Met: &yes},
	}
	var got []bar
	for _, b := range r.bars() {
		for _, w := range want {
			if b.Bar == w.Bar {
				got = append(got, b)
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("bars:\n got %+v\nwant %+v", got, want)
	}
}
