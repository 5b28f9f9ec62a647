package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// Blobs belong to models. The bytes of a blob are stored once, under
// blobs/, whoever uploaded them; a model reaches a blob only through its
// link, models/REPO/NAME/blobs/sha256/HEX, as in distribution's linked blob
// stores. Every blob HEAD, GET and redirect checks the link, and a manifest
// may name only blobs linked to its model, so knowing a digest is not
// enough to read another model's bytes.
//
// A model gets a link by proving it may hold the blob:
//   - its pusher sends the bytes (proxied: the registry verifies them; the
//     copy already stored is kept and the new bytes are dropped);
//   - its pusher has pull on another model that links the blob (a mount,
//     PUT …/blobs/DIGEST?from=REPO/NAME), which moves no bytes.
//
// With redirects the bytes go to the object store, and the registry
// commits the link when the pusher offers the blob again or names it in a
// manifest. Two things make that safe without the registry seeing bytes:
//   - A blob not stored yet is uploaded straight to its key under an
//     upload claim (uploads/sha256/…), which names the one model whose
//     presigned PUT may create it. Only that model's commit links it.
//   - A blob stored already is uploaded to the model's staging key
//     (models/REPO/NAME/uploads/sha256/HEX); its presence there proves the
//     pusher had the bytes, because every presigned PUT binds the length
//     and sha256. The commit links the blob and deletes the staged copy.
//     So does a pusher that found the claim held by another model: its
//     commit takes the claim over, so the other model's commit fails, and
//     copies the staged bytes to the blob's key inside the store.

// blobLink is the document at a link key: what the registry verified of
// the blob when it linked it.
type blobLink struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
}

// maxLinkSize bounds a link document read from storage.
const maxLinkSize = 4 << 10

// readLink returns the size the model's link to d records; ok is false
// when the model holds no link to d.
func (reg *Registry) readLink(ctx context.Context, repo, name string, d digest.Digest) (size int64, ok bool, err error) {
	key := linkKey(repo, name, d)
	if size, cached := reg.links.get(key); cached {
		// A link's document never changes; whether it still exists does
		// (garbage collection, on any replica): a stat tells.
		_, err := reg.store.Stat(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			reg.links.remove(key)
			return 0, false, nil
		}
		if err != nil {
			return 0, false, internal("stat blob link", err)
		}
		return size, true, nil
	}
	data, _, err := storage.ReadAll(ctx, reg.store, key, maxLinkSize)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, internal("read blob link", err)
	}
	var l blobLink
	if err := json.Unmarshal(data, &l); err != nil || l.Digest != d || l.Size < 0 {
		// A damaged link proves nothing; linking again replaces it.
		reg.log.WarnContext(ctx, "blob link is corrupt; treating it as missing", "model", repo+"/"+name, "digest", d)
		return 0, false, nil
	}
	reg.links.put(key, l.Size)
	return l.Size, true, nil
}

// linkCacheEntries bounds the link cache: about 100 bytes an entry.
const linkCacheEntries = 1 << 16

// linkCache keeps the sizes links record, by link key, so that checking a
// link costs a stat rather than a read and a parse.
type linkCache struct{ boundedCache[int64] }

func (c *linkCache) put(key string, size int64) {
	c.boundedCache.put(key, size, 0, cacheBounds{entries: linkCacheEntries})
}

// errBlobCollected reports a link taken back because garbage collection
// deleted its blob while it was being written.
var errBlobCollected = spec.Errorf(spec.ErrorUnavailable, "garbage collection removed the blob while it was being linked; retry")

// writeLink links d, of size bytes, to the model. The caller has verified
// that the blob is stored with that size and that the model may hold it.
//
// A link implies its blob. A collection deletes a blob no link it listed
// points to, then deletes the links to it that were written since
// (gcRun.dropDanglingLinks); writeLink stats the blob after writing the
// link. Either the stat sees the blob, so the link came before the delete
// and the collection removes it, or the stat does not, and writeLink takes
// the link back and returns errBlobCollected. No link outlives its blob.
func (reg *Registry) writeLink(ctx context.Context, repo, name string, d digest.Digest, size int64) error {
	data, _ := json.Marshal(blobLink{Digest: d, Size: size})
	sum := sha256.Sum256(data)
	key := linkKey(repo, name, d)
	if err := reg.store.Put(ctx, key, bytes.NewReader(data), int64(len(data)), sum[:]); err != nil {
		return internal("write blob link", err)
	}
	if stored, err := reg.blobStored(ctx, d, size); err != nil {
		return err
	} else if !stored {
		if err := reg.dropLink(ctx, repo, name, d); err != nil {
			return err
		}
		return errBlobCollected
	}
	reg.links.put(key, size)
	return nil
}

// dropLink deletes the model's link to d, whose blob is gone.
func (reg *Registry) dropLink(ctx context.Context, repo, name string, d digest.Digest) error {
	key := linkKey(repo, name, d)
	reg.links.remove(key)
	if err := reg.store.Delete(ctx, key); err != nil {
		return internal("delete blob link", err)
	}
	return nil
}

// linked reports whether the model links d with exactly size bytes.
func (reg *Registry) linked(ctx context.Context, repo, name string, d digest.Digest, size int64) (bool, error) {
	got, ok, err := reg.readLink(ctx, repo, name, d)
	return ok && got == size, err
}

// blobLinkedTo returns the size of blob d if the model links it, else the
// BLOB_UNKNOWN error: a blob of another model reads as absent.
func (reg *Registry) blobLinkedTo(ctx context.Context, repo, name string, d digest.Digest) (int64, error) {
	size, ok, err := reg.readLink(ctx, repo, name, d)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, spec.Errorf(spec.ErrorBlobUnknown, "blob %s is not in model %s/%s", d, repo, name)
	}
	return size, nil
}

// mount links d to the model from the model source ("REPO/NAME") when the
// caller may pull source and source links d with size bytes. It reports
// whether it linked; a source that does not qualify is not an error (the
// upload goes on as without a source).
func (reg *Registry) mount(ctx context.Context, repo, name, source string, d digest.Digest, size int64) (bool, error) {
	srcRepo, srcName, err := parseModelName(source)
	if err != nil {
		return false, err
	}
	if reg.opts.Policy != nil && !reg.opts.Policy.Allowed(identityOf(ctx), auth.Pull, source) {
		return false, nil
	}
	ok, err := reg.linked(ctx, srcRepo, srcName, d, size)
	if err != nil || !ok {
		return false, err
	}
	// The source's link says the blob is stored; make sure before linking.
	if stored, err := reg.blobStored(ctx, d, size); err != nil || !stored {
		return false, err
	}
	if err := reg.writeLink(ctx, repo, name, d, size); errors.Is(err, errBlobCollected) {
		return false, nil // the upload goes on without the source
	} else if err != nil {
		return false, err
	}
	reg.metrics.dedup.WithLabelValues("mount").Inc()
	return true, nil
}

// parseModelName splits and validates "REPOSITORY/NAME".
func parseModelName(s string) (repo, name string, err error) {
	repo, name, ok := strings.Cut(s, "/")
	if !ok {
		return "", "", spec.Errorf(spec.ErrorNameInvalid, "model %q is not REPOSITORY/NAME", s)
	}
	if err := spec.ValidateRepository(repo); err != nil {
		return "", "", err
	}
	if err := spec.ValidateComponent("name", name); err != nil {
		return "", "", err
	}
	return repo, name, nil
}

// uploadClaim is the document at a claim key: which model's presigned
// upload may create the blob, and until when no other model may take the
// claim over.
type uploadClaim struct {
	Model string    `json:"model"`
	Until time.Time `json:"until"`
}

// claimValidity is how long a claim stays the only one: the presigned URL
// it came with, and time for an upload started just before that URL
// expired to finish.
func (reg *Registry) claimValidity() time.Duration { return reg.opts.PresignExpiry + 10*time.Minute }

// readClaim returns the claim on d and its ETag; a missing claim is the
// zero claim with no ETag, and so is a damaged one, with its ETag, so that
// it can be replaced.
func (reg *Registry) readClaim(ctx context.Context, d digest.Digest) (uploadClaim, string, bool, error) {
	data, info, err := storage.ReadAll(ctx, reg.store, claimKey(d), maxLinkSize)
	if errors.Is(err, storage.ErrNotFound) {
		return uploadClaim{}, "", false, nil
	}
	if err != nil {
		return uploadClaim{}, "", false, internal("read upload claim", err)
	}
	var c uploadClaim
	if json.Unmarshal(data, &c) != nil {
		return uploadClaim{}, info.ETag, true, nil
	}
	return c, info.ETag, true, nil
}

// claimUpload asks for the claim on blob d for the model. It returns true
// when the model holds the claim now (new, renewed, or taken over because
// it had expired, or because force is set) and false when another model's
// claim is still valid.
func (reg *Registry) claimUpload(ctx context.Context, model string, d digest.Digest, force bool) (bool, error) {
	for range maxUpdateAttempts {
		mine, _ := json.Marshal(uploadClaim{Model: model, Until: reg.now().Add(reg.claimValidity()).UTC()})
		err := reg.store.PutIfAbsent(ctx, claimKey(d), mine)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, storage.ErrPreconditionFailed) {
			return false, internal("write upload claim", err)
		}
		c, etag, exists, err := reg.readClaim(ctx, d)
		if err != nil {
			return false, err
		}
		if !exists {
			continue // a collection removed it meanwhile
		}
		if c.Model != model && reg.now().Before(c.Until) && !force {
			return false, nil
		}
		err = reg.store.PutIfMatch(ctx, claimKey(d), mine, etag)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, storage.ErrPreconditionFailed) {
			return false, internal("write upload claim", err)
		}
	}
	return false, spec.Errorf(spec.ErrorConflict, "the upload claim on blob %s changed on every attempt; retry", d)
}

// blobStored reports whether blob d is stored with size bytes.
func (reg *Registry) blobStored(ctx context.Context, d digest.Digest, size int64) (bool, error) {
	info, err := reg.store.Stat(ctx, blobKey(d))
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, internal("stat blob", err)
	}
	return info.Size == size, nil
}

// uploadState is what linking blob d to a model needs to know from the
// store: the model's link, whether the blob is stored with the declared
// size, and the upload claim on it (when read).
type uploadState struct {
	linkSize    int64
	linked      bool
	stored      bool
	claimRead   bool
	claim       uploadClaim
	claimExists bool
}

// readUploadState reads what linking d (of size bytes) to the model
// needs: the model's link and, in redirect mode, the size of the stored
// blob and, with withClaim, the upload claim on d. A link this replica has
// cached is checked alone first: a blob the model links with that size
// needs nothing else. Otherwise the reads go at once: each is a round trip
// to the object store, which a new blob pays for all of them, so on a
// network three in a row cost three times one. Proxied uploads link as
// they store, so without redirects only the link is read.
func (reg *Registry) readUploadState(ctx context.Context, repo, name string, d digest.Digest, size int64, withClaim bool) (uploadState, error) {
	var st uploadState
	_, cached := reg.links.get(linkKey(repo, name, d))
	if cached || reg.presign == nil {
		var err error
		st.linkSize, st.linked, err = reg.readLink(ctx, repo, name, d)
		if err != nil || reg.presign == nil || st.linked && st.linkSize == size {
			return st, err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	if !cached {
		g.Go(func() (err error) {
			st.linkSize, st.linked, err = reg.readLink(gctx, repo, name, d)
			return err
		})
	}
	g.Go(func() (err error) {
		st.stored, err = reg.blobStored(gctx, d, size)
		return err
	})
	if withClaim {
		st.claimRead = true
		g.Go(func() (err error) {
			st.claim, _, st.claimExists, err = reg.readClaim(gctx, d)
			return err
		})
	}
	return st, g.Wait()
}

// commitUpload links d to the model if the model's pusher uploaded it to
// a presigned URL: straight to the blob's key under the model's claim, or
// to the model's staging key. st says whether the blob is stored with size
// bytes and, if read, who holds its claim. It reports whether it linked.
func (reg *Registry) commitUpload(ctx context.Context, repo, name string, d digest.Digest, size int64, st uploadState) (bool, error) {
	model := repo + "/" + name
	blobStored := st.stored
	if blobStored {
		c, exists := st.claim, st.claimExists
		if !st.claimRead {
			var err error
			if c, _, exists, err = reg.readClaim(ctx, d); err != nil {
				return false, err
			}
		}
		if exists && c.Model == model {
			// Claims are given only while the blob is missing, and only
			// the holder's presigned PUT may create it: these are its bytes.
			// The claim is left to expire (garbage collection removes it):
			// it names this model only, which holds the blob now.
			return linkedUnlessCollected(reg.writeLink(ctx, repo, name, d, size))
		}
	}
	staged, err := reg.store.Stat(ctx, stagedKey(repo, name, d))
	if errors.Is(err, storage.ErrNotFound) || (err == nil && staged.Size != size) {
		return false, nil
	}
	if err != nil {
		return false, internal("stat staged upload", err)
	}
	if !blobStored {
		// Another model's claim may stand on the missing blob: take it
		// over first, so that model's commit no longer links whatever
		// reaches the blob's key now.
		if _, err := reg.claimUpload(ctx, model, d, true); err != nil {
			return false, err
		}
		sum, _ := digestSum(d)
		if err := storage.Copy(ctx, reg.store, stagedKey(repo, name, d), blobKey(d), size, sum); errors.Is(err, storage.ErrNotFound) {
			return false, nil // a concurrent commit of this model moved it
		} else if err != nil {
			return false, internal("copy staged upload", err)
		}
	}
	if ok, err := linkedUnlessCollected(reg.writeLink(ctx, repo, name, d, size)); !ok {
		return false, err
	}
	if err := reg.store.Delete(ctx, stagedKey(repo, name, d)); err != nil {
		return false, internal("delete staged upload", err)
	}
	return true, nil
}

// linkedUnlessCollected turns writeLink's answer into a commit's: a blob
// collected meanwhile is not committed, and its pusher uploads it again.
func linkedUnlessCollected(err error) (bool, error) {
	if errors.Is(err, errBlobCollected) {
		return false, nil
	}
	return err == nil, err
}

// linkedSize returns the size the model's link to d records, first
// committing a completed redirected upload of d (of the declared size), or
// making d if it is a derived layer of the model's views, if the model has
// no link yet; ok is false when d is not linked.
func (reg *Registry) linkedSize(ctx context.Context, repo, name string, d digest.Digest, declared int64) (size int64, ok bool, err error) {
	// A blob this replica has not seen linked is most likely one the push
	// just sent: what its commit needs is read with the link.
	st, err := reg.readUploadState(ctx, repo, name, d, declared, true)
	if err != nil || st.linked {
		return st.linkSize, st.linked, err
	}
	if reg.presign != nil { // proxied uploads link as they store
		if ok, err = reg.commitUpload(ctx, repo, name, d, declared, st); ok || err != nil {
			return declared, ok, err
		}
	}
	// A layer of one of the model's views, such as a file of an OCI
	// artifact that `modelx tag` names again, is made now.
	return reg.materialize(ctx, repo, name, d)
}
