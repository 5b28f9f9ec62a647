package client_test

import (
	"encoding/json"
	"strings"
	"testing"

	"modelx.io/modelx/client"
)

// jsonKeyOrder returns the keys of the JSON object v marshals to, in order.
func jsonKeyOrder(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	var keys []string
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch tok := tok.(type) {
		case json.Delim:
			if tok == '{' || tok == '[' {
				depth++
			} else {
				depth--
			}
		case string:
			if depth == 1 { // a key: its value is decoded whole
				keys = append(keys, tok)
				var skip json.RawMessage
				if err := dec.Decode(&skip); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return strings.Join(keys, ",")
}

// TestTransferJSON: the figures push and pull share are one embedded
// Transfer, which leaves -o json as it was: the same keys, in the same
// order, each result naming its bytes moved apart.
func TestTransferJSON(t *testing.T) {
	figures := client.Transfer{SkippedBytes: 2, BlobsTransferred: 3, BlobsSkipped: 4, Files: 5, DurationSeconds: 1.5}
	push := client.PushResult{Reference: "r", Digest: "sha256:new", PreviousDigest: "sha256:old", UploadedBytes: 1, Transfer: figures}
	if got, want := jsonKeyOrder(t, push), "reference,digest,previous_digest,uploaded_bytes,skipped_bytes,blobs_transferred,blobs_skipped,files,duration_seconds"; got != want {
		t.Errorf("push keys:\n got %s\nwant %s", got, want)
	}
	pull := client.PullResult{Reference: "r", Digest: "sha256:d", DownloadedBytes: 1, Transfer: figures, Stale: []string{"a"}, Pruned: []string{"b"}}
	if got, want := jsonKeyOrder(t, pull), "reference,digest,downloaded_bytes,skipped_bytes,blobs_transferred,blobs_skipped,files,duration_seconds,stale_files,pruned_files"; got != want {
		t.Errorf("pull keys:\n got %s\nwant %s", got, want)
	}
	var back client.PullResult
	data, _ := json.Marshal(pull)
	if err := json.Unmarshal(data, &back); err != nil || back.Transfer != figures || back.DownloadedBytes != 1 {
		t.Errorf("pull result does not survive JSON: %+v, %v", back, err)
	}
}
