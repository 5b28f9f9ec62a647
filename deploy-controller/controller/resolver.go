package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"modelx.io/modelx/client"
	"modelx.io/modelx/client/credentials"
	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/spec"
)

// Resolver turns a model reference into the digest of its manifest and,
// with src.Mount image, of its image form.
type Resolver interface {
	Resolve(ctx context.Context, src v1alpha1.ModelSource) (Resolved, error)
}

// Resolved is a model version found in the registry.
type Resolved struct {
	// Digest of the manifest.
	Digest string
	// ImageDigest is the digest of the version's image form (its OCI image
	// index), resolved with mount image only.
	ImageDigest string
	// Files are the paths of the version's files.
	Files []string
}

// Reasons of the Resolved condition, each naming what a person can do.
const (
	ReasonResolved            = "Resolved"
	ReasonModelNotFound       = "ModelNotFound"
	ReasonRegistryUnreachable = "RegistryUnreachable"
	ReasonUnauthorized        = "Unauthorized"
	ReasonInvalidReference    = "InvalidReference"
	// ReasonNoImageForm: with mount image, the registry serves no image
	// form of the version (a modelxd from before it).
	ReasonNoImageForm = "NoImageForm"
	// ReasonPreparingImageForm: with mount image, the registry is still
	// building the version's image form; the controller asks again.
	ReasonPreparingImageForm = "PreparingImageForm"
)

// ResolveError is a failed resolution with the condition reason it maps to.
type ResolveError struct {
	Reason string
	Err    error
}

// Error describes the failure.
func (e *ResolveError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *ResolveError) Unwrap() error { return e.Err }

// RegistryResolver asks modelxd, with the controller's own token.
type RegistryResolver struct {
	// HTTPClient carries the requests; default client.DefaultHTTPClient().
	HTTPClient *http.Client
	// Keychain finds the controller's bearer token for a registry; nil
	// for none.
	Keychain credentials.Keychain
	// HoldTTL is how long the holds it puts last unless renewed; 0 is the
	// registry's default (7 days, or its --max-hold-ttl).
	HoldTTL time.Duration
	// ImageFormWait bounds the wait for a version's image form: the first
	// request builds it, reading the version's files once, which may take
	// minutes for a large model. Past it the reconcile moves on (reason
	// PreparingImageForm) while modelxd goes on building, and asks again.
	// Default DefaultImageFormWait.
	ImageFormWait time.Duration
}

// DefaultImageFormWait is RegistryResolver.ImageFormWait's default.
const DefaultImageFormWait = 20 * time.Second

// api is the registry API of src's registry, and src's repository and name.
func (r *RegistryResolver) api(src v1alpha1.ModelSource, ref string) (*client.API, client.Reference, error) {
	parsed, err := client.ParseReference(src.Registry+"/"+src.Name+"@"+ref, nil)
	if err != nil {
		return nil, client.Reference{}, &ResolveError{Reason: ReasonInvalidReference, Err: err}
	}
	return client.NewAPI(parsed.Registry, r.HTTPClient, r.Keychain), parsed, nil
}

// Hold implements Holds: it puts (or renews) the hold in the registry.
func (r *RegistryResolver) Hold(ctx context.Context, src v1alpha1.ModelSource, holder string, digests []string) (time.Time, error) {
	api, ref, err := r.api(src, "latest")
	if err != nil {
		return time.Time{}, err
	}
	h, err := api.PutHold(ctx, ref.Repository, ref.Name, holder, digests, r.HoldTTL)
	if err != nil {
		return time.Time{}, holdError(err, ref)
	}
	return h.Expires, nil
}

// Release implements Holds: it removes the hold from the registry; one the
// registry does not know (released, expired, or its model deleted) is
// released already.
func (r *RegistryResolver) Release(ctx context.Context, src v1alpha1.ModelSource, holder string) error {
	api, ref, err := r.api(src, "latest")
	if err != nil {
		return err
	}
	err = api.ReleaseHold(ctx, ref.Repository, ref.Name, holder)
	if err == nil || errors.Is(err, client.ErrHoldUnknown) || client.Code(err) == spec.ErrorIndexUnknown {
		return nil
	}
	return holdError(err, ref)
}

// holdError says what to do about a refused hold.
func holdError(err error, ref client.Reference) error {
	var apiErr *client.Error
	if errors.As(err, &apiErr) && (apiErr.Status == http.StatusUnauthorized || apiErr.Status == http.StatusForbidden) {
		return fmt.Errorf("%s refused the controller's hold (%s): grant it the hold action on %s/%s: %w", ref.Registry, apiErr.API.Code, ref.Repository, ref.Name, err)
	}
	return err
}

// Resolve implements Resolver. With mount image it then asks for the
// image form of the digest found (client.API.ImageDigest).
func (r *RegistryResolver) Resolve(ctx context.Context, src v1alpha1.ModelSource) (Resolved, error) {
	d, m, err := r.resolve(ctx, src)
	if err != nil {
		return Resolved{}, err
	}
	res := Resolved{Digest: d, Files: fileNames(m)}
	if src.Mount == v1alpha1.MountImage {
		if res.ImageDigest, err = r.imageDigest(ctx, src, d); err != nil {
			return Resolved{}, err
		}
	}
	return res, nil
}

// imageDigest resolves the image form of src's version with this digest.
func (r *RegistryResolver) imageDigest(ctx context.Context, src v1alpha1.ModelSource, d string) (string, error) {
	api, ref, err := r.api(src, d)
	if err != nil {
		return "", err
	}
	wait := r.ImageFormWait
	if wait <= 0 {
		wait = DefaultImageFormWait
	}
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	image, err := api.ImageDigest(waitCtx, ref.Repository, ref.Name, d)
	if err == nil {
		return string(image), nil
	}
	var apiErr *client.Error
	switch {
	case ctx.Err() == nil && waitCtx.Err() != nil:
		return "", &ResolveError{Reason: ReasonPreparingImageForm, Err: fmt.Errorf("%s is still preparing the image form of %s@%s: its first request reads the version's files once; the controller asks again", ref.Registry, src.Name, short(d))}
	case errors.Is(err, client.ErrNoImageForm):
		return "", &ResolveError{Reason: ReasonNoImageForm, Err: fmt.Errorf("%s serves no image form of %s@%s, which mount: image mounts (%w): upgrade modelxd, or use mount: initContainer", ref.Registry, src.Name, short(d), err)}
	case errors.As(err, &apiErr) && (apiErr.Status == http.StatusUnauthorized || apiErr.Status == http.StatusForbidden):
		return "", &ResolveError{Reason: ReasonUnauthorized, Err: fmt.Errorf("%s refused the controller the image form of %s (%s): grant it pull on %s", ref.Registry, src.Name, apiErr.API.Code, src.Name)}
	case errors.As(err, &apiErr) && apiErr.Status < 500:
		return "", &ResolveError{Reason: ReasonNoImageForm, Err: fmt.Errorf("%s cannot serve the image form of %s@%s, which mount: image mounts: %w; use mount: initContainer for this version", ref.Registry, src.Name, short(d), err)}
	}
	return "", &ResolveError{Reason: ReasonRegistryUnreachable, Err: err}
}

// fileNames lists the paths of a manifest's files, packed or not, and
// its config (modelx.yaml).
func fileNames(m *spec.Manifest) []string {
	if m == nil {
		return nil
	}
	var out []string
	if m.Config.Name != "" {
		out = append(out, m.Config.Name)
	}
	for _, b := range m.Blobs {
		if len(b.Files) > 0 {
			for _, f := range b.Files {
				out = append(out, f.Name)
			}
			continue
		}
		out = append(out, b.Name)
	}
	return out
}

func (r *RegistryResolver) resolve(ctx context.Context, src v1alpha1.ModelSource) (string, *spec.Manifest, error) {
	api, ref, err := r.api(src, refOf(src))
	if err != nil {
		return "", nil, err
	}
	m, _, d, err := api.GetManifest(ctx, ref.Repository, ref.Name, ref.ManifestRef())
	if err == nil {
		return string(d), m, nil
	}
	var apiErr *client.Error
	switch {
	case errors.As(err, &apiErr) && (apiErr.Status == http.StatusUnauthorized || apiErr.Status == http.StatusForbidden):
		return "", nil, &ResolveError{Reason: ReasonUnauthorized, Err: fmt.Errorf("%s refused the controller (%s): grant it pull on %s", ref.Registry, apiErr.API.Code, src.Name)}
	case client.Code(err) == spec.ErrorManifestUnknown || client.Code(err) == spec.ErrorIndexUnknown:
		return "", nil, &ResolveError{Reason: ReasonModelNotFound, Err: fmt.Errorf("%s has no %s@%s: push it, or fix spec.model", ref.Registry, src.Name, refOf(src))}
	case errors.As(err, &apiErr) && apiErr.Status < 500:
		return "", nil, &ResolveError{Reason: ReasonInvalidReference, Err: err}
	}
	return "", nil, &ResolveError{Reason: ReasonRegistryUnreachable, Err: err}
}

func refOf(src v1alpha1.ModelSource) string {
	if src.Digest != "" {
		return src.Digest
	}
	return src.Tag
}
