//go:build !linux && !darwin

package client

// freeSpace cannot know the free space here.
func freeSpace(string) (int64, bool) { return 0, false }
