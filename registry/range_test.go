package registry

import "testing"

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		header         string
		size           int64
		offset, length int64
		partial, err   bool
	}{
		{"", 10, 0, 10, false, false},
		{"", 0, 0, 0, false, false},
		{"bytes=0-0", 10, 0, 1, true, false},
		{"bytes=2-5", 10, 2, 4, true, false},
		{"bytes=2-", 10, 2, 8, true, false},
		{"bytes=8-100", 10, 8, 2, true, false},
		{"bytes=-3", 10, 7, 3, true, false},
		{"bytes=-30", 10, 0, 10, true, false},
		{"bytes=0-1,4-5", 10, 0, 10, false, false}, // multi-range: whole blob
		{"items=0-1", 10, 0, 10, false, false},     // unknown unit: whole blob
		{"bytes=10-", 10, 0, 0, false, true},
		{"bytes=5-2", 10, 0, 0, false, true},
		{"bytes=-0", 10, 0, 0, false, true},
		{"bytes=x-", 10, 0, 0, false, true},
		{"bytes=3", 10, 0, 0, false, true},
		{"bytes=0-", 0, 0, 0, false, true},
	} {
		offset, length, partial, err := parseRange(tc.header, tc.size)
		if (err != nil) != tc.err || (err == nil && (offset != tc.offset || length != tc.length || partial != tc.partial)) {
			t.Errorf("parseRange(%q, %d) = %d, %d, %v, %v; want %d, %d, %v, err=%v",
				tc.header, tc.size, offset, length, partial, err, tc.offset, tc.length, tc.partial, tc.err)
		}
	}
}
