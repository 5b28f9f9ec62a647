package registry_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
)

// The OCI client tests run the real oras and crane against modelxd over
// plain HTTP (oras --plain-http, crane --insecure), on every backend.

// ociArtifactType is the artifact type the tests push models as.
const ociArtifactType = "application/vnd.example.model"

// ociArtifact is a model as files in a directory: path ("/"-separated,
// relative) → bytes.
type ociArtifact struct {
	dir   string
	files map[string][]byte
}

// newOCIArtifact writes a model of a few KiB of JSON, an empty file, a
// file in a subdirectory and 3 MiB of random weights.
func newOCIArtifact(t *testing.T) *ociArtifact {
	t.Helper()
	rng := rand.New(rand.NewChaCha8([32]byte{42}))
	weights := make([]byte, 3<<20)
	for i := range weights {
		weights[i] = byte(rng.Uint32())
	}
	config := []byte(`{"model_type": "bert", "vocab": [` + strings.Repeat(`"token", `, 600) + `"end"]}`)
	a := &ociArtifact{dir: t.TempDir(), files: map[string][]byte{
		"config.json":         config,
		"empty.txt":           {},
		"tokenizer/vocab.txt": []byte("[PAD]\n[UNK]\nhello\nworld\n"),
		"weights.bin":         weights,
	}}
	for name, data := range a.files {
		writeFile(t, filepath.Join(a.dir, name), data)
	}
	return a
}

// paths returns the artifact's file paths in order.
func (a *ociArtifact) paths() []string { return slices.Sorted(maps.Keys(a.files)) }

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readTree returns every regular file under dir by its "/"-separated path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[filepath.ToSlash(rel)] = data
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// requireSameFiles fails unless got holds exactly the files of want, byte
// for byte.
func requireSameFiles(t *testing.T, got, want map[string][]byte) {
	t.Helper()
	if maps.EqualFunc(got, want, bytes.Equal) {
		return
	}
	describe := func(files map[string][]byte) []string {
		var out []string
		for _, p := range slices.Sorted(maps.Keys(files)) {
			out = append(out, p+" ("+strconv.Itoa(len(files[p]))+" bytes, "+digest.FromBytes(files[p]).Encoded()[:12]+")")
		}
		return out
	}
	t.Fatalf("files differ:\ngot  %v\nwant %v", describe(got), describe(want))
}

// ociHost is the registry's host:port, as OCI references name it.
func (h *harness) ociHost() string {
	u, err := url.Parse(h.url)
	if err != nil {
		h.t.Fatal(err)
	}
	return u.Host
}

// orasOK runs oras in dir and fails the test if it fails.
func orasOK(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	out, err := testenv.OrasIn(t, dir, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// craneOK runs crane and fails the test if it fails.
func craneOK(t *testing.T, env []string, args ...string) string {
	t.Helper()
	out, err := testenv.Crane(t, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// orasDescriptor is what oras prints with --format json: a descriptor,
// and for discover the referrers of the subject.
type orasDescriptor struct {
	Digest       digest.Digest     `json:"digest"`
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType"`
	Annotations  map[string]string `json:"annotations"`
	Referrers    []orasDescriptor  `json:"referrers"`
}

func parseOrasJSON(t *testing.T, out string) orasDescriptor {
	t.Helper()
	var d orasDescriptor
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("oras output %q: %v", out, err)
	}
	return d
}

// ociTestManifest is the part of an OCI image manifest the tests check.
type ociTestManifest struct {
	MediaType    string `json:"mediaType"`
	ArtifactType string `json:"artifactType"`
	Config       struct {
		MediaType string        `json:"mediaType"`
		Digest    digest.Digest `json:"digest"`
	} `json:"config"`
	Layers []struct {
		MediaType   string            `json:"mediaType"`
		Digest      digest.Digest     `json:"digest"`
		Size        int64             `json:"size"`
		Annotations map[string]string `json:"annotations"`
	} `json:"layers"`
	Annotations map[string]string `json:"annotations"`
}

func parseOCIManifest(t *testing.T, data []byte) ociTestManifest {
	t.Helper()
	var m ociTestManifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("manifest %q: %v", data, err)
	}
	return m
}

// lines splits a client's listing into its lines.
func lines(out string) []string { return strings.Fields(out) }

// pushOCIArtifact pushes a with oras to ref and returns the manifest's digest.
func pushOCIArtifact(t *testing.T, a *ociArtifact, env []string, ref string) digest.Digest {
	t.Helper()
	args := []string{"push", "--plain-http", "--format", "json", "--artifact-type", ociArtifactType,
		"--annotation", "org.example.team=nlp", ref}
	pushed := parseOrasJSON(t, orasOK(t, a.dir, env, append(args, a.paths()...)...))
	if pushed.Digest.Validate() != nil || pushed.ArtifactType != ociArtifactType {
		t.Fatalf("oras push printed %+v", pushed)
	}
	return pushed.Digest
}

// mountsCounted reads the registry's count of blobs linked by mounts.
func (h *harness) mountsCounted() int {
	h.t.Helper()
	r := h.do(http.MethodGet, "/metrics", nil, nil)
	h.expect(r, http.StatusOK, "")
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `modelxd_blob_dedup_hits_total{kind="mount"} `); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				h.t.Fatalf("mount count %q", v)
			}
			return n
		}
	}
	return 0
}

// TestOCIClients pushes, pulls, tags, copies and deletes with the real
// oras and crane on every backend.
func TestOCIClients(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Run("Oras", func(t *testing.T) { testOras(t, b) })
			t.Run("Crane", func(t *testing.T) { testCrane(t, b) })
		})
	}
}

// testOras: an artifact of several files round-trips byte for byte; its
// manifest, tags, referrers and deletes read back as pushed.
func testOras(t *testing.T, b backend) {
	h := newHarness(t, b, registry.Options{})
	a := newOCIArtifact(t)
	repo := h.ociHost() + "/team/model"
	d := pushOCIArtifact(t, a, nil, repo+":v1")

	out := t.TempDir()
	orasOK(t, out, nil, "pull", "--plain-http", repo+":v1")
	requireSameFiles(t, readTree(t, out), a.files)

	// The manifest is what oras pushed: its bytes have the digest, and it
	// names every file with its title, digest and size.
	raw := orasOK(t, "", nil, "manifest", "fetch", "--plain-http", repo+":v1")
	if got := digest.FromString(raw); got != d {
		t.Fatalf("oras manifest fetch: bytes of %s, pushed %s", got, d)
	}
	m := parseOCIManifest(t, []byte(raw))
	if m.MediaType != spec.MediaTypeOCIManifest || m.ArtifactType != ociArtifactType || m.Annotations["org.example.team"] != "nlp" {
		t.Fatalf("manifest %s: mediaType %q artifactType %q annotations %v", raw, m.MediaType, m.ArtifactType, m.Annotations)
	}
	titled := map[string]digest.Digest{}
	for _, l := range m.Layers {
		title := l.Annotations["org.opencontainers.image.title"]
		if data, ok := a.files[title]; !ok || l.Digest != digest.FromBytes(data) || l.Size != int64(len(data)) {
			t.Fatalf("layer %q (%s, %d bytes) is not a pushed file", title, l.Digest, l.Size)
		}
		titled[title] = l.Digest
	}
	if len(titled) != len(a.files) {
		t.Fatalf("layers %v, want one per file of %v", titled, a.paths())
	}
	r := h.do(http.MethodHead, "/v2/team/model/manifests/v1", nil, http.Header{"Accept": {spec.MediaTypeOCIManifest}})
	if r.status != http.StatusOK || r.header.Get(spec.OCIDigestHeader) != string(d) || r.header.Get("Content-Type") != spec.MediaTypeOCIManifest {
		t.Fatalf("HEAD manifest: %d, %s %q, Content-Type %q", r.status, spec.OCIDigestHeader, r.header.Get(spec.OCIDigestHeader), r.header.Get("Content-Type"))
	}

	orasOK(t, "", nil, "tag", "--plain-http", repo+":v1", "v1.0", "latest")
	if got := lines(orasOK(t, "", nil, "repo", "tags", "--plain-http", repo)); !slices.Equal(got, []string{"latest", "v1", "v1.0"}) {
		t.Fatalf("oras repo tags: %v", got)
	}
	if got := lines(orasOK(t, "", nil, "repo", "ls", "--plain-http", h.ociHost())); !slices.Equal(got, []string{"team/model"}) {
		t.Fatalf("oras repo ls: %v", got)
	}

	// A signature attached to v1 is found through the referrers API, not
	// through a fallback tag (oras uses one when the registry does not
	// answer a subject's push with OCI-Subject).
	sigDir := t.TempDir()
	sig := []byte(`{"signed": "team/model:v1"}`)
	writeFile(t, filepath.Join(sigDir, "signature.json"), sig)
	attached := parseOrasJSON(t, orasOK(t, sigDir, nil, "attach", "--plain-http", "--format", "json",
		"--artifact-type", "application/vnd.example.signature", repo+":v1", "signature.json"))
	found := parseOrasJSON(t, orasOK(t, "", nil, "discover", "--plain-http", "--format", "json", repo+":v1"))
	if found.Digest != d || len(found.Referrers) != 1 || found.Referrers[0].Digest != attached.Digest ||
		found.Referrers[0].ArtifactType != "application/vnd.example.signature" {
		t.Fatalf("oras discover: %+v, want v1 (%s) with the referrer %s", found, d, attached.Digest)
	}
	if got := lines(orasOK(t, "", nil, "repo", "tags", "--plain-http", repo)); !slices.Equal(got, []string{"latest", "v1", "v1.0"}) {
		t.Fatalf("oras repo tags after attach: %v (a sha256-… tag is the fallback of a registry without referrers)", got)
	}
	if got := parseOrasJSON(t, orasOK(t, "", nil, "discover", "--plain-http", "--format", "json",
		"--artifact-type", "application/vnd.example.sbom", repo+":v1")); len(got.Referrers) != 0 {
		t.Fatalf("oras discover of another artifact type: %+v", got.Referrers)
	}

	// Deleting the signature's manifest takes it out of the referrers;
	// deleting its layer takes the blob out of the model.
	orasOK(t, "", nil, "manifest", "delete", "--plain-http", "--force", repo+"@"+string(attached.Digest))
	if got := parseOrasJSON(t, orasOK(t, "", nil, "discover", "--plain-http", "--format", "json", repo+":v1")); len(got.Referrers) != 0 {
		t.Fatalf("oras discover after the referrer's delete: %+v", got.Referrers)
	}
	r = h.do(http.MethodGet, "/v2/team/model/manifests/"+string(attached.Digest), nil, nil)
	expectOCIError(t, r, http.StatusNotFound, "MANIFEST_UNKNOWN")
	sigBlob := digest.FromBytes(sig)
	orasOK(t, "", nil, "blob", "delete", "--plain-http", "--force", repo+"@"+string(sigBlob))
	if r := h.do(http.MethodHead, "/v2/team/model/blobs/"+string(sigBlob), nil, nil); r.status != http.StatusNotFound {
		t.Fatalf("HEAD of a deleted blob: %d, want 404", r.status)
	}
	if _, err := testenv.Oras(t, nil, "blob", "fetch", "--plain-http", "--output", "-", repo+"@"+string(sigBlob)); err == nil {
		t.Fatal("oras blob fetch of a deleted blob succeeded")
	}
	out = t.TempDir()
	orasOK(t, out, nil, "pull", "--plain-http", repo+":latest")
	requireSameFiles(t, readTree(t, out), a.files)

	// oras deletes a manifest by digest even when given a tag: every tag
	// on it goes.
	orasOK(t, "", nil, "manifest", "delete", "--plain-http", "--force", repo+":v1")
	if got := lines(orasOK(t, "", nil, "repo", "tags", "--plain-http", repo)); len(got) != 0 {
		t.Fatalf("oras repo tags after the manifest's delete: %v", got)
	}
	expectOCIError(t, h.do(http.MethodGet, "/v2/team/model/manifests/"+string(d), nil, nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
	if _, err := testenv.OrasIn(t, t.TempDir(), nil, "pull", "--plain-http", repo+":latest"); err == nil {
		t.Fatal("oras pull of a deleted tag succeeded")
	}
}

// testCrane: crane copies an oras artifact to another model by mounting
// its blobs, reads, tags and deletes it, and pushes and pulls a small
// image built from a tarball.
func testCrane(t *testing.T, b backend) {
	h := newHarness(t, b, registry.Options{})
	a := newOCIArtifact(t)
	host := h.ociHost()
	d := pushOCIArtifact(t, a, nil, host+"/team/model:v1")

	// The copy moves no bytes: every blob (config and four layers) is
	// mounted from team/model, as crane asks with ?mount=&from=.
	craneOK(t, nil, "copy", "--insecure", host+"/team/model:v1", host+"/team/other:v1")
	if n := h.mountsCounted(); n != 5 {
		t.Fatalf("crane copy mounted %d blobs, want 5 (a config and 4 layers)", n)
	}
	src := craneOK(t, nil, "manifest", "--insecure", host+"/team/model:v1")
	dst := craneOK(t, nil, "manifest", "--insecure", host+"/team/other:v1")
	if src != dst || digest.FromString(dst) != d {
		t.Fatalf("crane manifest: copy %s, source %s, pushed %s", digest.FromString(dst), digest.FromString(src), d)
	}
	if got := strings.TrimSpace(craneOK(t, nil, "digest", "--insecure", host+"/team/other:v1")); got != string(d) {
		t.Fatalf("crane digest %s, want %s", got, d)
	}
	if got := lines(craneOK(t, nil, "ls", "--insecure", host+"/team/other")); !slices.Equal(got, []string{"v1"}) {
		t.Fatalf("crane ls: %v", got)
	}
	weights := digest.FromBytes(a.files["weights.bin"])
	if got := craneOK(t, nil, "blob", "--insecure", host+"/team/other@"+string(weights)); got != string(a.files["weights.bin"]) {
		t.Fatalf("crane blob: %d bytes of %s, want the weights", len(got), digest.FromString(got))
	}

	craneOK(t, nil, "tag", "--insecure", host+"/team/other:v1", "stable")
	if got := lines(craneOK(t, nil, "ls", "--insecure", host+"/team/other")); !slices.Equal(got, []string{"stable", "v1"}) {
		t.Fatalf("crane ls after crane tag: %v", got)
	}
	craneOK(t, nil, "delete", "--insecure", host+"/team/other:stable")
	if got := lines(craneOK(t, nil, "ls", "--insecure", host+"/team/other")); !slices.Equal(got, []string{"v1"}) {
		t.Fatalf("crane ls after deleting a tag: %v", got)
	}
	craneOK(t, nil, "delete", "--insecure", host+"/team/other@"+string(d))
	if _, err := testenv.Crane(t, nil, "manifest", "--insecure", host+"/team/other:v1"); err == nil {
		t.Fatal("crane manifest of a deleted manifest's tag succeeded")
	}
	// The source keeps its manifest and blobs.
	if got := craneOK(t, nil, "manifest", "--insecure", host+"/team/model:v1"); got != src {
		t.Fatalf("the source's manifest after the copy's delete: %s", got)
	}
	if got := craneOK(t, nil, "blob", "--insecure", host+"/team/model@"+string(weights)); got != string(a.files["weights.bin"]) {
		t.Fatal("the source's weights after the copy's delete differ")
	}

	// An image from a tarball, with no base and no Docker: crane gzips the
	// layer and writes the config.
	layer := layerTar(t, map[string]string{"models/hello.txt": "hello from a layer\n"})
	layerPath := filepath.Join(t.TempDir(), "layer.tar")
	writeFile(t, layerPath, layer)
	pushed := strings.TrimSpace(craneOK(t, nil, "append", "--insecure", "--oci-empty-base", "-f", layerPath, "-t", host+"/team/img:v1"))
	_, imgDigest, ok := strings.Cut(pushed, "@")
	if !ok || digest.Digest(imgDigest).Validate() != nil {
		t.Fatalf("crane append printed %q, want a reference by digest", pushed)
	}
	if got := strings.TrimSpace(craneOK(t, nil, "digest", "--insecure", host+"/team/img:v1")); got != imgDigest {
		t.Fatalf("crane digest of the appended image %s, crane append said %s", got, imgDigest)
	}

	layout := filepath.Join(t.TempDir(), "layout")
	craneOK(t, nil, "pull", "--insecure", "--format", "oci", host+"/team/img:v1", layout)
	img := readOCILayout(t, layout)
	if img.digest != digest.Digest(imgDigest) || img.manifest.MediaType != spec.MediaTypeOCIManifest || len(img.layers) != 1 {
		t.Fatalf("pulled layout: manifest %s (%s) with %d layers, want %s with 1", img.digest, img.manifest.MediaType, len(img.layers), imgDigest)
	}
	zr, err := gzip.NewReader(bytes.NewReader(img.layers[0]))
	if err != nil {
		t.Fatal(err)
	}
	if unzipped, err := io.ReadAll(zr); err != nil || !bytes.Equal(unzipped, layer) {
		t.Fatalf("the pulled layer is not the tarball appended (%d bytes, %v)", len(unzipped), err)
	}
	if want := digest.FromBytes(layer); len(img.diffIDs) != 1 || img.diffIDs[0] != want {
		t.Fatalf("config diff_ids %v, want [%s]", img.diffIDs, want)
	}
	if got := craneOK(t, nil, "blob", "--insecure", host+"/team/img@"+string(img.manifest.Layers[0].Digest)); got != string(img.layers[0]) {
		t.Fatal("crane blob of the layer differs from the pulled layer")
	}

	// The layout pushed back is the same image, byte for byte.
	pushed = strings.TrimSpace(craneOK(t, nil, "push", "--insecure", layout, host+"/team/img2:v1"))
	if !strings.HasSuffix(pushed, "@"+imgDigest) {
		t.Fatalf("crane push of the pulled layout printed %q, want digest %s", pushed, imgDigest)
	}
	exported := craneOK(t, nil, "export", "--insecure", host+"/team/img2:v1", "-")
	if got := filesOfTar(t, []byte(exported)); string(got["models/hello.txt"]) != "hello from a layer\n" {
		t.Fatalf("crane export: files %v", got)
	}
}

// layerTar makes a layer tarball of files (path → content), in order, with
// fixed metadata.
func layerTar(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[name])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ociLayoutImage is the one image of an OCI image layout.
type ociLayoutImage struct {
	digest   digest.Digest
	manifest ociTestManifest
	layers   [][]byte
	diffIDs  []digest.Digest
}

// readOCILayout reads the one image of an OCI layout, checking that
// every blob it reads has the digest it is stored under.
func readOCILayout(t *testing.T, dir string) ociLayoutImage {
	t.Helper()
	blob := func(d digest.Digest) []byte {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(dir, "blobs", string(d.Algorithm()), d.Encoded()))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != d.Encoded() {
			t.Fatalf("layout blob %s has the bytes of sha256:%x", d, sum)
		}
		return data
	}
	var index struct {
		Manifests []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"manifests"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("layout index %s: %v", data, err)
	}
	img := ociLayoutImage{digest: index.Manifests[0].Digest}
	img.manifest = parseOCIManifest(t, blob(img.digest))
	for _, l := range img.manifest.Layers {
		img.layers = append(img.layers, blob(l.Digest))
	}
	var config struct {
		RootFS struct {
			DiffIDs []digest.Digest `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(blob(img.manifest.Config.Digest), &config); err != nil {
		t.Fatal(err)
	}
	img.diffIDs = config.RootFS.DiffIDs
	return img
}

// ociCIToken is the robot's token in the OCI auth tests.
const ociCIToken = "robot-token-of-ci-0123456789"

// TestOCIClientsWithAuth logs oras and crane in with a robot's token (the
// Bearer token flow of /-/oci/token) on every backend: logged in, they
// push, pull and copy the robot's models; a wrong token fails at login;
// anonymous clients read only the repository the policy makes public.
func TestOCIClientsWithAuth(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { testOCIClientsWithAuth(t, b) })
	}
}

func testOCIClientsWithAuth(t *testing.T, b backend) {
	sum := sha256.Sum256([]byte(ociCIToken))
	authn, err := auth.New(auth.Config{Robots: []auth.Robot{{Name: "ci", TokenSHA256: hex.EncodeToString(sum[:])}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := &auth.Policy{
		AnonymousRepositories: []string{"pub/open"},
		Rules: []auth.Rule{{Repositories: []string{"team/*", "pub/*"},
			Actions: []auth.Action{auth.Pull, auth.Push, auth.Delete}, Robots: []string{"ci"}}},
	}
	if err := policy.Validate(); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, b, registry.Options{Authenticator: authn, Policy: policy})
	host := h.ociHost()
	a := newOCIArtifact(t)

	// A wrong token is refused at login, and the answer does not repeat it.
	_, err = testenv.Oras(t, nil, "login", "-u", "ci", "-p", "not-the-token-of-ci", "--plain-http", host)
	if err == nil {
		t.Fatal("oras login with a wrong token succeeded")
	}
	if msg := strings.ToLower(err.Error()); !strings.Contains(msg, "unauthorized") && !strings.Contains(msg, "invalid") {
		t.Fatalf("oras login with a wrong token: %v; want it to say unauthorized or invalid", err)
	}
	if strings.Contains(err.Error(), "not-the-token-of-ci") {
		t.Fatalf("the answer to a wrong token repeats it: %v", err)
	}
	if _, err := testenv.Oras(t, nil, "push", "--plain-http", host+"/team/model:v1", filepath.Join(a.dir, "config.json")); err == nil {
		t.Fatal("anonymous oras push succeeded")
	}

	orasLogin := []string{"DOCKER_CONFIG=" + t.TempDir()}
	if out := orasOK(t, "", orasLogin, "login", "-u", "ci", "-p", ociCIToken, "--plain-http", host); !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("oras login printed %q", out)
	}
	d := pushOCIArtifact(t, a, orasLogin, host+"/team/model:v1")
	out := t.TempDir()
	orasOK(t, out, orasLogin, "pull", "--plain-http", host+"/team/model:v1")
	requireSameFiles(t, readTree(t, out), a.files)
	_, err = testenv.OrasIn(t, t.TempDir(), nil, "pull", "--plain-http", host+"/team/model:v1")
	if err == nil {
		t.Fatal("anonymous oras pull of a private model succeeded")
	}
	if msg := strings.ToLower(err.Error()); !strings.Contains(msg, "unauthorized") && !strings.Contains(msg, "401") {
		t.Fatalf("anonymous oras pull of a private model: %v; want it to say unauthorized", err)
	}

	// crane auth login stores the credentials; the first request checks them.
	wrongLogin := []string{"DOCKER_CONFIG=" + t.TempDir()}
	craneOK(t, wrongLogin, "auth", "login", host, "-u", "ci", "-p", "not-the-token-of-ci")
	if _, err := testenv.Crane(t, wrongLogin, "manifest", "--insecure", host+"/team/model:v1"); err == nil || !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
		t.Fatalf("crane manifest with a wrong token: %v, want unauthorized", err)
	}
	craneLogin := []string{"DOCKER_CONFIG=" + t.TempDir()}
	craneOK(t, craneLogin, "auth", "login", host, "-u", "ci", "-p", ociCIToken)
	craneOK(t, craneLogin, "copy", "--insecure", host+"/team/model:v1", host+"/team/copy:v1")
	if got := strings.TrimSpace(craneOK(t, craneLogin, "digest", "--insecure", host+"/team/copy:v1")); got != string(d) {
		t.Fatalf("crane digest of the copy %s, want %s", got, d)
	}
	weights := digest.FromBytes(a.files["weights.bin"])
	if got := craneOK(t, craneLogin, "blob", "--insecure", host+"/team/copy@"+string(weights)); got != string(a.files["weights.bin"]) {
		t.Fatal("crane blob of the copy's weights differs")
	}
	if _, err := testenv.Crane(t, nil, "copy", "--insecure", host+"/team/model:v1", host+"/team/anon:v1"); err == nil {
		t.Fatal("anonymous crane copy succeeded")
	}

	// The public model is read anonymously, through the anonymous token.
	pub := pushOCIArtifact(t, a, orasLogin, host+"/pub/open:v1")
	if got := craneOK(t, nil, "manifest", "--insecure", host+"/pub/open:v1"); digest.FromString(got) != pub {
		t.Fatalf("anonymous crane manifest of the public model: %s, want %s", digest.FromString(got), pub)
	}
	out = t.TempDir()
	orasOK(t, out, nil, "pull", "--plain-http", host+"/pub/open:v1")
	requireSameFiles(t, readTree(t, out), a.files)
	if _, err := testenv.Crane(t, nil, "manifest", "--insecure", host+"/team/model:v1"); err == nil {
		t.Fatal("anonymous crane manifest of a private model succeeded")
	}
}
