package pack

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
)

// goldenPackDigest is the digest of the digests of the packs goldenFiles
// make, in order. Pack bytes are
// part of the format: a change to the encoder settings, the frame layout or
// the grouping changes this digest and so defeats deduplication against
// every pack already pushed (readers are not affected: the manifest names
// every file's frame). Change it only on purpose, with docs/formats.md.
const goldenPackDigest = "sha256:baf0170929a22fb16163e7020e6c89de964f3b22fcad84d172d91027682bed70"

// goldenFiles are 40 JSON-like files of varied, compressible text. The text
// comes from a fixed xorshift generator, not math/rand, so it cannot change
// with the Go version.
func goldenFiles() files {
	words := []string{"layer", "weight", "bias", "attention", "head", "norm", "token", "embed", "0.125", "true", "null", "-3e-05"}
	x := uint64(0x6d6f64656c78)
	next := func() uint64 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return x
	}
	fs := files{"empty": nil}
	for i := range 40 {
		var b strings.Builder
		for range i * 40 {
			fmt.Fprintf(&b, "%q: %s,\n", words[next()%uint64(len(words))], words[next()%uint64(len(words))])
		}
		fs[fmt.Sprintf("dir/%02d.json", i)] = []byte(b.String())
	}
	return fs
}

func TestGoldenPackDigest(t *testing.T) {
	fs := goldenFiles()
	groups := Group(fs.entries())
	// Packs built at the same time on several goroutines are the same bytes.
	var wg sync.WaitGroup
	got := make([]digest.Digest, 8)
	for i := range got {
		wg.Go(func() {
			var all []string
			for _, g := range groups {
				data, _, err := Build(nil, g, fs.open)
				if err != nil {
					t.Error(err)
					return
				}
				all = append(all, string(digest.FromBytes(data)))
			}
			got[i] = digest.FromString(strings.Join(all, "\n"))
		})
	}
	wg.Wait()
	for _, d := range got {
		if d != goldenPackDigest {
			t.Fatalf("pack digest %s, want %s: the pack format changed", d, goldenPackDigest)
		}
	}
}
