package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client"
)

// TestImageDigest asks a real modelxd for the image form of a version,
// by tag and by the version's digest: both name the index whose bytes
// the registry serves. A registry without the image form, and a refusal,
// say so.
func TestImageDigest(t *testing.T) {
	e := fsEnv(t)
	ctx := context.Background()
	res, err := newClient(client.Options{}).Push(ctx, ref(t, e, "nlp/bert:v1"), basicModel(t))
	if err != nil {
		t.Fatal(err)
	}
	api := client.NewAPI(e.url, nil, nil)
	byTag, err := api.ImageDigest(ctx, "nlp", "bert", "v1")
	if err != nil {
		t.Fatal(err)
	}
	byDigest, err := api.ImageDigest(ctx, "nlp", "bert", string(res.Digest))
	if err != nil || byDigest != byTag || byTag == res.Digest {
		t.Fatalf("by digest %s (%v), by tag %s; want the same index, not the version %s", byDigest, err, byTag, res.Digest)
	}
	resp, err := http.Get(e.url + "/v2/nlp/bert/image/manifests/" + string(byTag))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if digest.FromBytes(data) != byTag || !strings.Contains(string(data), "application/vnd.oci.image.index.v1+json") {
		t.Fatalf("GET by the index digest: HTTP %d, %d bytes hashing to %s, want the index %s", resp.StatusCode, len(data), digest.FromBytes(data), byTag)
	}
	if _, err := api.ImageDigest(ctx, "nlp", "bert", "nope"); !errors.Is(err, client.ErrNoImageForm) {
		t.Errorf("unknown tag: %v, want ErrNoImageForm", err)
	}

	// A registry from before the image form answers 404 under /v2/.
	old := httptest.NewServer(http.NotFoundHandler())
	defer old.Close()
	if _, err := client.NewAPI(old.URL, nil, nil).ImageDigest(ctx, "nlp", "bert", "v1"); !errors.Is(err, client.ErrNoImageForm) || !strings.Contains(err.Error(), "predates the image form") {
		t.Errorf("old registry: %v, want ErrNoImageForm", err)
	}
	// A refusal is asked again with GET, for the registry's message.
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"code":"DENIED","message":"robot ci may not pull nlp/bert"}`))
	}))
	defer refusing.Close()
	_, err = client.NewAPI(refusing.URL, nil, nil).ImageDigest(ctx, "nlp", "bert", "v1")
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden || !strings.Contains(err.Error(), "may not pull") {
		t.Errorf("refused: %v, want the registry's 403 message", err)
	}
}
