package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "512MiB", want: 512 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: "1G", want: 1 << 30},
		{in: "1.5GiB", want: 3 << 29},
		{in: "100MB", want: 100e6},
		{in: "4096", want: 4096},
		{in: "64 kib", want: 64 << 10},
		{in: "", bad: true},
		{in: "GiB", bad: true},
		{in: "12 parsecs", bad: true},
	} {
		got, err := parseSize(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parseSize(%q) = %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	s := sortedDurations(d)
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.1, time.Millisecond}} {
		if got := percentile(s, tc.p); got != tc.want {
			t.Errorf("percentile(p%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile of nothing = %v", got)
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("percentile of one = %v", got)
	}
}

func TestMarkdownTable(t *testing.T) {
	got := markdownTable([]string{"name", "n"}, [][]string{{"a|b", "1"}, {"long name", "100"}}, []bool{false, true})
	want := "" +
		"| name      |   n |\n" +
		"| --------- | --: |\n" +
		"| a\\|b      |   1 |\n" +
		"| long name | 100 |\n"
	if got != want {
		t.Errorf("markdownTable:\n%s\nwant:\n%s", got, want)
	}
}

func TestFormat(t *testing.T) {
	for in, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1 << 20: "1.0 MiB", 512 << 20: "512.0 MiB", 3 << 29: "1.5 GiB"} {
		if got := formatBytes(in); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[time.Duration]string{1500 * time.Millisecond: "1.50 s", 45600 * time.Microsecond: "45.6 ms", 812 * time.Microsecond: "812 µs"} {
		if got := formatDuration(in); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestPlanFloor(t *testing.T) {
	files := []fileEntry{
		{name: "big", path: "big", size: 40 << 20}, // 16 + 16 + 8: an 8 MiB tail is big enough alone
		{name: "mid", path: "mid", size: 20 << 20}, // 16 + 4 → one 20 MiB object
		{name: "s1", path: "s1", size: 5 << 20},    // small: concatenated
		{name: "s2", path: "s2", size: 4 << 20},    // closes an object at 9 MiB
		{name: "s3", path: "s3", size: 1 << 20},    // a short last object joins the previous one
	}
	objs := planFloor("m", files)
	var sizes []string
	var total int64
	for _, o := range objs {
		sizes = append(sizes, formatBytes(o.size))
		total += o.size
		if o.size < floorMinObject {
			t.Errorf("object %s is %s, below the minimum", o.key, formatBytes(o.size))
		}
	}
	if got, want := strings.Join(sizes, ","), "16.0 MiB,16.0 MiB,8.0 MiB,20.0 MiB,10.0 MiB"; got != want {
		t.Errorf("object sizes %s, want %s", got, want)
	}
	if total != 70<<20 {
		t.Errorf("objects hold %d bytes, want %d", total, 70<<20)
	}
}
