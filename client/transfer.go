package client

// Transfer holds the figures a push and a pull report alike. Blobs are
// counted each once, by their stored size (a pack's compressed bytes), so a
// version's bytes moved and SkippedBytes sum to its stored size; the bytes
// moved are the result's own field (PushResult.UploadedBytes,
// PullResult.DownloadedBytes), as -o json names them apart.
type Transfer struct {
	// SkippedBytes and BlobsSkipped count the blobs not moved because the
	// other side held them already; BlobsTransferred those moved.
	SkippedBytes     int64 `json:"skipped_bytes"`
	BlobsTransferred int   `json:"blobs_transferred"`
	BlobsSkipped     int   `json:"blobs_skipped"`
	// Files counts the version's files (within a pull's selection).
	Files           int     `json:"files"`
	DurationSeconds float64 `json:"duration_seconds"`
}
