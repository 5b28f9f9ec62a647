package registry

import (
	"strings"

	"github.com/opencontainers/go-digest"
)

// Storage layout. Blobs are keyed by digest alone, so a blob pushed to any
// repository is stored once; manifests and indexes live under their model.
//
//	index.json                                   global index of models
//	blobs/sha256/ab/abcdef…                      blob bytes
//	models/REPO/NAME/index.json                  the model's tags
//	models/REPO/NAME/manifests/sha256/abcdef…    manifests by digest
const (
	globalIndexKey = "index.json"
	blobsPrefix    = "blobs/"
	modelsPrefix   = "models/"
	indexFile      = "index.json"
)

func blobKey(d digest.Digest) string {
	hex := d.Encoded()
	return blobsPrefix + string(d.Algorithm()) + "/" + hex[:2] + "/" + hex
}

func modelPrefix(repo, name string) string { return modelsPrefix + repo + "/" + name + "/" }

func modelIndexKey(repo, name string) string { return modelPrefix(repo, name) + indexFile }

func manifestKey(repo, name string, d digest.Digest) string {
	return modelPrefix(repo, name) + "manifests/" + string(d.Algorithm()) + "/" + d.Encoded()
}

// parseModelKey splits a key under models/ into repository, name and the
// rest ("index.json" or "manifests/sha256/…").
func parseModelKey(key string) (repo, name, rest string, ok bool) {
	parts := strings.SplitN(strings.TrimPrefix(key, modelsPrefix), "/", 3)
	if len(parts) != 3 || !strings.HasPrefix(key, modelsPrefix) {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// digestFromKey returns the digest a blob or manifest key ends in.
func digestFromKey(key string) (digest.Digest, bool) {
	i := strings.LastIndexByte(key, '/')
	d := digest.NewDigestFromEncoded(digest.SHA256, key[i+1:])
	if !strings.Contains(key, "/sha256/") || d.Validate() != nil {
		return "", false
	}
	return d, true
}
