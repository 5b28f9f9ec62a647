package registry_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
)

// ociConformanceEnv configures the conformance suite for modelxd: the
// optional APIs it serves are tested too, and the data it does not serve
// is turned off, with why (docs/oci.md says the same).
var ociConformanceEnv = map[string]string{
	"OCI_API_BLOBS_UPLOAD_CANCEL":     "true",
	"OCI_API_BLOBS_DIGEST_HEADER":     "true",
	"OCI_API_MANIFESTS_DIGEST_HEADER": "true",
	"OCI_API_MANIFESTS_TAG_PARAM":     "true",
	// Blobs and manifests are addressed by sha256 only: one algorithm keeps
	// every blob stored once, whoever pushed it, and is what every OCI
	// client pushes by default.
	"OCI_DATA_SHA512": "false",
}

// ociEnvFor is ociConformanceEnv for backend b. With S3 redirects a blob
// GET ends at the S3 server, whose answer cannot carry
// Docker-Content-Digest (a presigned URL can override only a few standard
// headers): that check is off there, and clients verify the bytes
// against the digest they asked for anyway.
func ociEnvFor(b backend) map[string]string {
	env := maps.Clone(ociConformanceEnv)
	if b.redirect {
		env["OCI_API_BLOBS_DIGEST_HEADER"] = "false"
	}
	return env
}

// ociConformanceSkips are the tests the suite skips on modelxd, with why.
var ociConformanceSkips = map[string]string{
	// A mount without ?from= would link any blob whose digest the pusher
	// knows: blobs belong to models (docs/tenancy.md), so modelxd mounts
	// only from a model the pusher may pull, and answers 202 (an upload)
	// otherwise, which the spec allows.
	"OCI Conformance Test/sha256 blobs/mount anonymous/blob-mount-anonymous": "mounts need ?from= (tenancy)",
}

// ociRedirectSkips are the further skips with S3 redirects: blob GETs go
// to the S3 server, whose answers to Range are its own.
var ociRedirectSkips = map[string]string{
	// versitygw answers the invalid range "500-0" with the whole blob, as
	// RFC 9110 allows a server to ignore an invalid Range.
	"OCI Conformance Test/sha256 blobs/range requests/range 500-0": "the S3 server ignores an invalid range",
}

// TestOCIConformance runs the OCI distribution-spec conformance suite
// (pull, push, content discovery, content management) against modelxd on
// each backend: the local filesystem, S3 through the registry, and S3 with
// presigned redirects for blob downloads. Every test must pass.
func TestOCIConformance(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			h := newHarness(t, b, registry.Options{})
			u, err := url.Parse(h.url)
			if err != nil {
				t.Fatal(err)
			}
			res := testenv.RunOCIConformance(t, testenv.OCIConformanceOptions{
				Registry: u.Host, Repo1: "conformance/one", Repo2: "conformance/two",
				Env: ociEnvFor(b),
			})
			allowed := maps.Clone(ociConformanceSkips)
			if b.redirect {
				maps.Copy(allowed, ociRedirectSkips)
			}
			res.RequirePass(t, allowed)
		})
	}
}

// TestOCIConformanceWithAuth runs the suite against a registry whose policy
// lets only authenticated identities in: the suite logs in with a robot's
// token as the password, through the Bearer token flow OCI clients use.
func TestOCIConformanceWithAuth(t *testing.T) {
	sum := sha256.Sum256([]byte(robotToken))
	authn, err := auth.New(auth.Config{Robots: []auth.Robot{{Name: "ci", TokenSHA256: hex.EncodeToString(sum[:])}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := &auth.Policy{Rules: []auth.Rule{{Repositories: []string{"conformance/*"}, Actions: []auth.Action{auth.Pull, auth.Push, auth.Delete}, Robots: []string{"ci"}}}}
	h := newHarness(t, backends(t)[0], registry.Options{Authenticator: authn, Policy: policy})
	u, err := url.Parse(h.url)
	if err != nil {
		t.Fatal(err)
	}
	res := testenv.RunOCIConformance(t, testenv.OCIConformanceOptions{
		Registry: u.Host, Repo1: "conformance/one", Repo2: "conformance/two",
		Username: "ci", Password: robotToken, Env: ociConformanceEnv,
	})
	res.RequirePass(t, ociConformanceSkips)
}

// TestOCIPutModelxManifest: a modelx manifest pushed through /v2/ is
// checked as through modelx's own API: its blobs, and the size of the
// annotations its tag copies into the index.
func TestOCIPutModelxManifest(t *testing.T) {
	h := newHarness(t, backends(t)[0], registry.Options{})
	const model = "oci/modelx"
	cfg := h.ociPushBlob(model, []byte("description: pushed through /v2/\n"))
	file := h.ociPushBlob(model, []byte("weights"))
	m := spec.Manifest{SchemaVersion: 1, MediaType: spec.MediaTypeManifest,
		Config: spec.Descriptor{Name: spec.ConfigFileName, MediaType: spec.MediaTypeConfig, Digest: cfg.Digest, Size: cfg.Size},
		Blobs:  []spec.Descriptor{{Name: "w.bin", MediaType: spec.MediaTypeFile, Digest: file.Digest, Size: file.Size}}}
	put := func(m spec.Manifest) response {
		data, _ := json.Marshal(m)
		return h.do(http.MethodPut, "/v2/"+model+"/manifests/v1", data, http.Header{"Content-Type": {spec.MediaTypeManifest}})
	}
	h.expect(put(m), http.StatusCreated, "")
	requireTree(t, modelxPull(t, h, model+":v1"), map[string][]byte{spec.ConfigFileName: []byte("description: pushed through /v2/\n"), "w.bin": []byte("weights")})
	m.Annotations = map[string]string{"big": strings.Repeat("x", 9<<10)}
	h.expect(put(m), http.StatusRequestEntityTooLarge, spec.ErrorTooLarge)
	m.Annotations = nil
	m.Blobs[0].Digest = digest.FromString("never pushed")
	h.expect(put(m), http.StatusBadRequest, spec.ErrorManifestBlobUnknown)
}
