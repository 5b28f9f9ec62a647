// Package humanize formats figures for people: the CLI's output and the
// web UI show sizes the same way.
package humanize

import "fmt"

// Bytes formats a byte count with binary units: 512 B, 1.5 KiB, 3.2 GiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Plural returns one when n is 1, else many: "1 file", "2 files".
func Plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
