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
		{Scenario: scNoopPush, Mode: modeRedirect, Model: "mixed", Seconds: 0.04},
		{Scenario: scNoopPull, Mode: modeRedirect, Model: "mixed", Seconds: 0.06},
		{Scenario: scSmallChange, Mode: modeRedirect, Model: "llm", BlobsMoved: 1, Diff: &blobDiff{NewBlobs: 1, NewPacks: 1}},
		{Scenario: scSmallChange, Mode: modeProxy, Model: "llm", BlobsMoved: 2, Diff: &blobDiff{NewBlobs: 2, NewPacks: 1}},
		{Scenario: scTensorShift, Mode: modeRedirect, Model: "llm", BlobsMoved: 5, Diff: &blobDiff{NewBlobs: 5, TensorChunks: 3}},
	}}
	yes, no := true, false
	want := []bar{
		{Bar: "noop-push, mixed", Target: "≤ " + secs(0.05), Measured: "llm/redirect " + secs(0.2) + ", llm/proxy " + secs(0.3) + ", mixed/redirect " + secs(0.04), Met: &yes},
		{Bar: "noop-pull, mixed", Target: "≤ " + secs(0.05), Measured: "mixed/redirect " + secs(0.06), Met: &no},
		{Bar: "one small file changed, mixed", Target: "≤ " + secs(0.15), Measured: "llm/redirect " + secs(0) + ", llm/proxy " + secs(0)},
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

// TestColdBars: cold pulls compare with the floor+write pull (issue 18's
// floor writes what it fetches), the many-small-files pull with the
// floor+tree pull, and a model without a floor has no bar.
func TestColdBars(t *testing.T) {
	r := &report{Rows: []row{
		{Scenario: scColdPull, Mode: modeRedirect, Model: "llm", Seconds: 1.1},
		{Scenario: scColdPull, Mode: modeFloor, Model: "llm", Seconds: 0.5},
		{Scenario: scColdPull, Mode: modeFloorWrite, Model: "llm", Seconds: 1},
		{Scenario: scColdPull, Mode: modeRedirect, Model: "small", Seconds: 3},
		{Scenario: scColdPull, Mode: modeFloor, Model: "small", Seconds: 0.5},
		{Scenario: scColdPull, Mode: modeFloorTree, Model: "small", Seconds: 1},
	}}
	met := map[string]bool{}
	for _, b := range r.bars() {
		if b.Met != nil {
			met[b.Bar] = *b.Met
		}
		if b.Bar == "cold-pull, redirect, small" && b.Target != "≤ 2.00× floor+tree" {
			t.Errorf("small cold pull target %q", b.Target)
		}
		if b.Bar == "cold-pull, redirect, llm" && b.Target != "≤ 1.15× floor+write" {
			t.Errorf("llm cold pull target %q", b.Target)
		}
	}
	if !met["cold-pull, redirect, llm"] || met["cold-pull, redirect, small"] {
		t.Errorf("met %v: want llm (1.10×) met, small (3.00× floor+tree) not", met)
	}
	if _, ok := met["cold-pull, redirect, mixed"]; ok {
		t.Errorf("a bar for mixed, which was not measured")
	}
}
