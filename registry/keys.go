package registry

import (
	"strings"

	"github.com/opencontainers/go-digest"
)

// Storage layout. Blobs are keyed by digest alone, so a blob pushed to any
// model is stored once; a model reaches it through its link (links.go).
// Manifests, indexes and links live under their model.
//
//	index.json                                   global index of models
//	layout.json                                  the layout's version (migrate.go)
//	blobs/sha256/ab/abcdef…                      blob bytes
//	uploads/sha256/abcdef…                       upload claim of a blob being uploaded
//	models/REPO/NAME/index.json                  the model's tags
//	models/REPO/NAME/holds.json                  the model's holds (holds.go)
//	models/REPO/NAME/manifests/sha256/abcdef…    manifests by digest
//	models/REPO/NAME/blobs/sha256/abcdef…        links: the blobs the model holds
//	models/REPO/NAME/uploads/sha256/abcdef…      staged uploads of stored blobs
//	models/REPO/NAME/referrers/sha256/SUBJECT/REFERRER  OCI referrers (oci.go)
//	models/REPO/NAME/sessions/ID/…               OCI upload sessions (ociupload.go)
//	models/REPO/NAME/views/sha256/SOURCE/VIEW    the OCI view of a modelx manifest (ociview.go)
//	models/REPO/NAME/images/sha256/SOURCE/INDEX  the image form of a version (imageview.go)
//	models/REPO/NAME/derived/sha256/abcdef…      how to make a layer of a view or image form
const (
	globalIndexKey = "index.json"
	layoutKey      = "layout.json"
	blobsPrefix    = "blobs/"
	claimsPrefix   = "uploads/"
	modelsPrefix   = "models/"
	indexFile      = "index.json"
	holdsFile      = "holds.json"
	manifestsDir   = "manifests/"
	linksDir       = "blobs/"
	stagedDir      = "uploads/"
	referrersDir   = "referrers/"
	sessionsDir    = "sessions/"
	viewsDir       = "views/"
	derivedDir     = "derived/"
	imagesDir      = "images/"
)

func blobKey(d digest.Digest) string {
	hex := d.Encoded()
	return blobsPrefix + string(d.Algorithm()) + "/" + hex[:2] + "/" + hex
}

// claimKey is flat: claims come and go, and on some stores every new
// directory level costs a write.
func claimKey(d digest.Digest) string {
	return claimsPrefix + string(d.Algorithm()) + "/" + d.Encoded()
}

func linkKey(repo, name string, d digest.Digest) string {
	return modelPrefix(repo, name) + linksDir + string(d.Algorithm()) + "/" + d.Encoded()
}

func stagedKey(repo, name string, d digest.Digest) string {
	return modelPrefix(repo, name) + stagedDir + string(d.Algorithm()) + "/" + d.Encoded()
}

// referrersPrefix is where the referrers of manifest subject are listed.
func referrersPrefix(repo, name string, subject digest.Digest) string {
	return modelPrefix(repo, name) + referrersDir + string(subject.Algorithm()) + "/" + subject.Encoded() + "/"
}

// referrerKey is the record that manifest d refers to subject.
func referrerKey(repo, name string, subject, d digest.Digest) string {
	return referrersPrefix(repo, name, subject) + d.Encoded()
}

// parseReferrerKey returns the manifest keys of the subject and of the
// referrer a referrer record of the model names.
func parseReferrerKey(repo, name, key string) (subject, referrer string, ok bool) {
	return parsePairKey(repo, name, key, referrersDir)
}

// parseViewKey returns the manifest keys of the modelx manifest and of its
// OCI view that a view record of the model names.
func parseViewKey(repo, name, key string) (source, view string, ok bool) {
	return parsePairKey(repo, name, key, viewsDir)
}

// parseImageKey returns the manifest keys of a version and of its image
// form's index that an image record of the model names.
func parseImageKey(repo, name, key string) (source, index string, ok bool) {
	return parsePairKey(repo, name, key, imagesDir)
}

// parsePairKey returns the two manifest keys a record under dir of the
// model names: dir/sha256/FIRST/SECOND.
func parsePairKey(repo, name, key, dir string) (first, second string, ok bool) {
	rest, found := strings.CutPrefix(key, modelPrefix(repo, name)+dir+"sha256/")
	s, r, found2 := strings.Cut(rest, "/")
	if !found || !found2 {
		return "", "", false
	}
	sd, rd := digest.NewDigestFromEncoded(digest.SHA256, s), digest.NewDigestFromEncoded(digest.SHA256, r)
	if sd.Validate() != nil || rd.Validate() != nil {
		return "", "", false
	}
	return manifestKey(repo, name, sd), manifestKey(repo, name, rd), true
}

// sessionPrefix is where the parts of an OCI upload session are stored.
func sessionPrefix(repo, name, id string) string {
	return modelPrefix(repo, name) + sessionsDir + id + "/"
}

func modelPrefix(repo, name string) string { return modelsPrefix + repo + "/" + name + "/" }

func modelIndexKey(repo, name string) string { return modelPrefix(repo, name) + indexFile }

func holdsKey(repo, name string) string { return modelPrefix(repo, name) + holdsFile }

func manifestKey(repo, name string, d digest.Digest) string {
	return modelPrefix(repo, name) + manifestsDir + string(d.Algorithm()) + "/" + d.Encoded()
}

// parseModelKey splits a key under models/ into repository, name and the
// rest ("index.json", "holds.json", "manifests/sha256/…", "blobs/sha256/…"
// or "uploads/sha256/…").
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
