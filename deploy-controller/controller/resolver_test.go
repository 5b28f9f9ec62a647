package controller_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	modelx "modelx.io/modelx/client"
	"modelx.io/modelx/client/credentials"
	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/controller"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/storage/fs"
)

// TestResolverAuthenticates resolves through a registry that requires a
// token, and maps each failure to the reason a person can act on.
func TestResolverAuthenticates(t *testing.T) {
	sum := sha256.Sum256([]byte("controller-token"))
	authn, err := auth.New(auth.Config{Robots: []auth.Robot{{Name: "controller", TokenSHA256: hex.EncodeToString(sum[:])}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := fs.New(t.TempDir())
	reg, _ := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Authenticator: authn, Policy: auth.DefaultPolicy(false)})
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "modelx.yaml"), []byte("description: x\n"), 0o644)
	ref, _ := modelx.ParseReference(srv.URL+"/nlp/bert:prod", nil)
	token := func(string) (string, error) { return "controller-token", nil }
	res, err := modelx.New(modelx.Options{Token: token}).Push(context.Background(), ref, dir)
	if err != nil {
		t.Fatal(err)
	}
	src := v1alpha1.ModelSource{Registry: srv.URL, Name: "nlp/bert", Tag: "prod"}
	r := &controller.RegistryResolver{Keychain: credentials.Static("controller-token")}
	if got, err := r.Resolve(context.Background(), src); err != nil || got.Digest != string(res.Digest) || !slices.Contains(got.Files, "modelx.yaml") {
		t.Fatalf("Resolve = %+v, %v; want %s with its files", got, err, res.Digest)
	}
	pinned := v1alpha1.ModelSource{Registry: srv.URL, Name: "nlp/bert", Digest: string(res.Digest)}
	if got, err := r.Resolve(context.Background(), pinned); err != nil || got.Digest != string(res.Digest) {
		t.Fatalf("Resolve(pinned) = %+v, %v", got, err)
	}
	// With mount image it resolves the version's image form too, through
	// the same client and token.
	image := src
	image.Mount = v1alpha1.MountImage
	want, err := modelx.NewAPI(srv.URL, nil, credentials.Static("controller-token")).ImageDigest(context.Background(), "nlp", "bert", string(res.Digest))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Resolve(context.Background(), image); err != nil || got.Digest != string(res.Digest) || got.ImageDigest != string(want) {
		t.Fatalf("Resolve(mount image) = %+v, %v; want image form %s", got, err, want)
	}
	if got, err := r.Resolve(context.Background(), src); err != nil || got.ImageDigest != "" {
		t.Fatalf("Resolve(mount initContainer) = %+v, %v; want no image form asked", got, err)
	}
	// A registry from before the image form: its /v2/ knows no image.
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasPrefix(req.URL.Path, "/v2/") {
			http.NotFound(w, req)
			return
		}
		reg.Handler().ServeHTTP(w, req)
	}))
	defer old.Close()
	oldImage := image
	oldImage.Registry = old.URL
	_, err = r.Resolve(context.Background(), oldImage)
	var noImage *controller.ResolveError
	if !errors.As(err, &noImage) || noImage.Reason != controller.ReasonNoImageForm || !strings.Contains(err.Error(), "mount: initContainer") {
		t.Errorf("Resolve on a registry without the image form: %v, want reason %s naming the way out", err, controller.ReasonNoImageForm)
	}
	// A registry still building the image form: the resolver stops
	// waiting and says so.
	busy := make(chan struct{})
	defer close(busy)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.Contains(req.URL.Path, "/image/manifests/") {
			select {
			case <-busy:
			case <-req.Context().Done():
			}
			return
		}
		reg.Handler().ServeHTTP(w, req)
	}))
	defer slow.Close()
	slowImage := image
	slowImage.Registry = slow.URL
	impatient := *r
	impatient.ImageFormWait = 50 * time.Millisecond
	var preparing *controller.ResolveError
	if _, err = impatient.Resolve(context.Background(), slowImage); !errors.As(err, &preparing) || preparing.Reason != controller.ReasonPreparingImageForm {
		t.Errorf("Resolve while the image form is built: %v, want reason %s", err, controller.ReasonPreparingImageForm)
	}
	for _, tc := range []struct {
		resolver *controller.RegistryResolver
		src      v1alpha1.ModelSource
		reason   string
	}{
		{&controller.RegistryResolver{}, src, controller.ReasonUnauthorized},
		{&controller.RegistryResolver{}, image, controller.ReasonUnauthorized},
		{r, v1alpha1.ModelSource{Registry: srv.URL, Name: "nlp/bert", Tag: "nope"}, controller.ReasonModelNotFound},
		{r, v1alpha1.ModelSource{Registry: srv.URL, Name: "nlp/bert", Digest: "sha256:" + strings.Repeat("0", 64)}, controller.ReasonModelNotFound},
		{r, v1alpha1.ModelSource{Registry: "http://127.0.0.1:1", Name: "nlp/bert", Tag: "prod"}, controller.ReasonRegistryUnreachable},
		{r, v1alpha1.ModelSource{Registry: srv.URL, Name: "Not Valid", Tag: "prod"}, controller.ReasonInvalidReference},
	} {
		_, err := tc.resolver.Resolve(context.Background(), tc.src)
		var re *controller.ResolveError
		if !errors.As(err, &re) || re.Reason != tc.reason {
			t.Errorf("Resolve(%+v): %v, want reason %s", tc.src, err, tc.reason)
		}
	}
}
