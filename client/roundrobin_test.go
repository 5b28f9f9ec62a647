package client

import (
	"slices"
	"testing"
)

func TestRoundRobin(t *testing.T) {
	for _, tc := range []struct {
		in   [][]int
		want []int
	}{
		{nil, nil},
		{[][]int{{1, 2, 3}}, []int{1, 2, 3}},
		{[][]int{{1, 4, 6, 7}, {2, 5}, {}, {3}}, []int{1, 2, 3, 4, 5, 6, 7}},
	} {
		if got := roundRobin(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("roundRobin(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
