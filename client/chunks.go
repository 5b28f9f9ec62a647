package client

import (
	"context"
	"crypto/sha256"
	"io"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client/chunker"
	"modelx.io/modelx/spec"
)

// hashChunks cuts r into content-defined chunks with params and hashes
// each: one read of r, in 1 MiB blocks that feed both the boundary search
// and the chunk's sha256, so no chunk is held in memory. Push and pull
// both chunk through it. found, when set, is called as each chunk is
// found, with the chunks so far and the last one's offset. A cancelled ctx
// ends it with context.Cause.
func hashChunks(ctx context.Context, r io.Reader, params chunker.Params, found func(chunks []spec.Chunk, offset int64)) ([]spec.Chunk, error) {
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	var chunks []spec.Chunk
	h := sha256.New()
	var offset, size int64
	err := chunker.Cut(r, params, *buf, func(b []byte, end bool) error {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		h.Write(b)
		size += int64(len(b))
		if end {
			chunks = append(chunks, spec.Chunk{Digest: digest.NewDigest(digest.SHA256, h), Size: size})
			if found != nil {
				found(chunks, offset)
			}
			h.Reset()
			offset += size
			size = 0
		}
		return nil
	})
	return chunks, err
}

// chunksSize is the length of the file that chunks make up.
func chunksSize(chunks []spec.Chunk) int64 {
	var n int64
	for _, ch := range chunks {
		n += ch.Size
	}
	return n
}
