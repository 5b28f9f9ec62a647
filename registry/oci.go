package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// The OCI distribution API (spec 1.1) under /v2/, on the same storage,
// links, policy and limits as modelx's own API (docs/oci.md). An OCI
// repository is a modelx model: REPOSITORY/NAME, two components. OCI
// manifests are stored beside modelx manifests, by digest, exactly as
// pushed; their tags share the model's index with modelx versions.

// ociTokenPath is the token endpoint that OCI clients' Bearer challenges
// name: it turns the credentials a client holds (any username, and a
// modelx token as the password) into the bearer token it then sends.
const ociTokenPath = "/-/oci/token"

// ociAnonymousToken is the token the token endpoint gives a client that
// sends no credentials: on /v2/ it stands for no identity, so the
// policy's anonymous rules apply. It is no secret.
const ociAnonymousToken = "anonymous"

// ociAPI is the dialect of the OCI distribution API: the {"errors": [...]}
// envelope, Bearer challenges naming the token endpoint and the scope, and
// tokens sent as Bearer or as the password of Basic credentials.
var ociAPI = dialect{
	writeError: writeOCIError,
	challenge: func(reg *Registry, w http.ResponseWriter, r *http.Request, model string, actions []auth.Action, extra string) {
		v := fmt.Sprintf(`Bearer realm="%s%s",service="%s"`, externalURL(r), ociTokenPath, r.Host)
		if model != "" {
			v += fmt.Sprintf(`,scope="repository:%s:%s"`, model, ociScopeActions(actions))
		}
		if extra != "" {
			v += "," + extra
		}
		w.Header().Set("WWW-Authenticate", v)
	},
	token: func(r *http.Request) (string, bool) {
		if t := auth.BearerToken(r); t != "" {
			if t == ociAnonymousToken {
				return "", true
			}
			return t, true
		}
		if _, password, ok := r.BasicAuth(); ok {
			return password, password != ""
		}
		return "", r.Header.Get("Authorization") == ""
	},
}

// ociScopeActions names modelx actions as the actions of a token scope.
func ociScopeActions(actions []auth.Action) string {
	names := make([]string, 0, len(actions))
	for _, a := range actions {
		switch a {
		case auth.Pull, auth.Push, auth.Delete:
			names = append(names, string(a))
		default:
			names = append(names, "*")
		}
	}
	if slices.Contains(names, "push") && !slices.Contains(names, "pull") {
		names = append([]string{"pull"}, names...) // clients ask for both to push
	}
	return strings.Join(names, ",")
}

// ociErrorCodes renames the modelx error codes that the OCI API spells
// otherwise; the others keep their names.
var ociErrorCodes = map[spec.ErrorCode]string{
	spec.ErrorTooManyRequests:  "TOOMANYREQUESTS",
	spec.ErrorIndexUnknown:     "NAME_UNKNOWN",
	spec.ErrorReferenceInvalid: "MANIFEST_INVALID",
}

// writeOCIError writes e in the OCI error envelope, with the status of
// its code.
func writeOCIError(w http.ResponseWriter, e *spec.Error) {
	code := string(e.Code)
	if c, ok := ociErrorCodes[e.Code]; ok {
		code = c
	}
	type ociError struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Detail  any    `json:"detail,omitempty"`
	}
	writeErrorEnvelope(w, e, struct {
		Errors []ociError `json:"errors"`
	}{[]ociError{{Code: code, Message: e.Message, Detail: e.Detail}}})
}

// handleOCI adapts a handlerFunc of the OCI API, as handle does for
// modelx's: its errors are written in the OCI envelope.
func (reg *Registry) handleOCI(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if apiErr := reg.apiError(r, h(w, r)); apiErr != nil {
			writeOCIError(w, apiErr)
		}
	}
}

// ociRoutes serves the OCI distribution API; it is mounted at /v2.
func (reg *Registry) ociRoutes() http.Handler {
	r := chi.NewRouter()
	r.Use(reg.authenticateIn(ociAPI))
	r.NotFound(reg.handleOCI(func(w http.ResponseWriter, r *http.Request) error {
		return spec.Errorf(spec.ErrorIndexUnknown, "no such repository or endpoint: %s %s; an OCI repository of modelxd is a model, REPOSITORY/NAME (two path components), see docs/oci.md", r.Method, r.URL.Path)
	}))
	r.MethodNotAllowed(reg.handleOCI(func(w http.ResponseWriter, r *http.Request) error {
		return spec.Errorf(spec.ErrorUnsupported, "method %s is not allowed on %s", r.Method, r.URL.Path)
	}))
	r.Get("/", reg.handleOCI(reg.ociPing))
	r.Get("/_catalog", reg.handleOCI(reg.ociCatalog))
	r.Route("/{repository}/{name}", func(r chi.Router) {
		authz := func(actions ...auth.Action) func(http.Handler) http.Handler {
			return reg.authorizeIn(ociAPI, actions...)
		}
		pull, push, del := authz(auth.Pull), authz(auth.Push), authz(auth.Delete)
		r.With(pull).Get("/tags/list", reg.handleOCI(reg.ociTags))
		r.With(pull).Get("/manifests/{reference}", reg.handleOCI(reg.ociGetManifest))
		r.With(pull).Head("/manifests/{reference}", reg.handleOCI(reg.ociGetManifest))
		r.With(push).Put("/manifests/{reference}", reg.handleOCI(reg.ociPutManifest))
		r.With(del).Delete("/manifests/{reference}", reg.handleOCI(reg.ociDeleteManifest))
		r.With(pull).Get("/blobs/{digest}", reg.handleOCI(reg.withDerived(reg.getBlob)))
		r.With(pull).Head("/blobs/{digest}", reg.handleOCI(reg.withDerived(reg.headBlob)))
		r.With(del).Delete("/blobs/{digest}", reg.handleOCI(reg.ociDeleteBlob))
		r.With(push).Post("/blobs/uploads", reg.handleOCI(reg.ociStartUpload))
		r.With(push).Post("/blobs/uploads/", reg.handleOCI(reg.ociStartUpload))
		r.With(push).Get("/blobs/uploads/{session}", reg.handleOCI(reg.ociUploadStatus))
		r.With(push).Patch("/blobs/uploads/{session}", reg.handleOCI(reg.ociPatchUpload))
		r.With(push).Put("/blobs/uploads/{session}", reg.handleOCI(reg.ociFinishUpload))
		r.With(push).Delete("/blobs/uploads/{session}", reg.handleOCI(reg.ociCancelUpload))
		r.With(pull).Get("/referrers/{digest}", reg.handleOCI(reg.ociReferrers))
		// The image form of the model's versions (imageview.go), read-only.
		r.With(pull).Get("/image/manifests/{reference}", reg.handleOCI(reg.ociImageManifest))
		r.With(pull).Head("/image/manifests/{reference}", reg.handleOCI(reg.ociImageManifest))
		r.With(pull).Get("/image/blobs/{digest}", reg.handleOCI(reg.withDerived(reg.getBlob)))
		r.With(pull).Head("/image/blobs/{digest}", reg.handleOCI(reg.withDerived(reg.headBlob)))
		r.With(pull).Get("/image/tags/list", reg.handleOCI(reg.ociTags))
	})
	return r
}

// ociPing answers GET /v2/. With authentication configured, a request
// without credentials is challenged, as OCI clients expect, so that
// `docker login` and `oras login` check the credentials they are given;
// the token endpoint gives clients without credentials an anonymous token.
func (reg *Registry) ociPing(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if reg.opts.Authenticator != nil && identityOf(r.Context()) == nil && auth.BearerToken(r) != ociAnonymousToken {
		ociAPI.challenge(reg, w, r, "", nil, "")
		return spec.Errorf(spec.ErrorUnauthorized, "authentication required: log in with any username and a modelx token as the password (docs/oci.md)")
	}
	return writeJSON(w, http.StatusOK, struct{}{})
}

// ociToken is the token endpoint (ociTokenPath). Credentials come as
// Basic auth (GET, the Docker token flow) or as an OAuth2 password or
// refresh_token grant (POST form); the password or refresh token is a
// modelx token (a robot's, or the ID token of `modelx login`), which is
// verified and handed back as the bearer token. Without credentials the
// answer is the anonymous token.
func (reg *Registry) ociToken(w http.ResponseWriter, r *http.Request) error {
	if reg.opts.Authenticator == nil {
		return spec.Errorf(spec.ErrorParameterInvalid, "this registry has no authentication: send requests without credentials")
	}
	var token string
	switch r.Method {
	case http.MethodPost:
		r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			return spec.Errorf(spec.ErrorUnauthorized, "the token request is not a valid form: %v", err)
		}
		switch grant := r.PostForm.Get("grant_type"); grant {
		case "password":
			token = r.PostForm.Get("password")
		case "refresh_token":
			token = r.PostForm.Get("refresh_token")
		default:
			return spec.Errorf(spec.ErrorParameterInvalid, "grant_type %q is not supported: use password or refresh_token", grant)
		}
	default:
		_, token, _ = r.BasicAuth()
	}
	issued := reg.now().UTC()
	expiresIn := time.Hour
	if token == "" {
		token = ociAnonymousToken
	} else {
		if _, err := reg.opts.Authenticator.AuthenticateToken(r.Context(), token); errors.Is(err, auth.ErrInvalidToken) {
			ociAPI.challenge(reg, w, r, "", nil, `error="invalid_token"`)
			return spec.Errorf(spec.ErrorUnauthorized, "the password is not a valid modelx token (%s): use a robot token, or the token of `modelx login`", trimTokenError(err))
		} else if err != nil {
			reg.log.ErrorContext(r.Context(), "authentication failed", "error", err)
			return spec.Errorf(spec.ErrorUnavailable, "the identity provider cannot be reached to verify the token; retry later")
		}
		if exp, ok := tokenExpiry(token); ok {
			expiresIn = max(exp.Sub(issued), time.Second)
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, map[string]any{
		"token": token, "access_token": token,
		"expires_in": int(expiresIn.Seconds()), "issued_at": issued.Format(time.RFC3339),
	})
}

// tokenExpiry reads the exp claim of a JWT that has been verified.
func tokenExpiry(raw string) (time.Time, bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(claims.Exp, 0), true
}

// ociCatalog lists the repositories (models) the caller may pull, in
// lexical order, n at a time after last.
func (reg *Registry) ociCatalog(w http.ResponseWriter, r *http.Request) error {
	idx, err := reg.viewIndex(r.Context(), globalIndexKey)
	if err != nil {
		return err
	}
	id := identityOf(r.Context())
	names := make([]string, 0, len(idx.Manifests))
	for _, desc := range idx.Manifests {
		if reg.canList(id, desc.Name) {
			names = append(names, desc.Name)
		}
	}
	page, next, err := paginate(r, names)
	if err != nil {
		return err
	}
	if next != "" {
		setNextLink(w, "/v2/_catalog", r.URL.Query().Get("n"), next)
	}
	return writeJSON(w, http.StatusOK, map[string][]string{"repositories": page})
}

// ociTags lists a model's tags in lexical order, n at a time after last.
func (reg *Registry) ociTags(w http.ResponseWriter, r *http.Request) error {
	repo, name, err := model(r)
	if err != nil {
		return err
	}
	idx, err := reg.viewIndex(r.Context(), modelIndexKey(repo, name))
	if err != nil {
		return err
	}
	tags := make([]string, 0, len(idx.Manifests))
	for _, desc := range idx.Manifests {
		tags = append(tags, desc.Name)
	}
	page, next, err := paginate(r, tags)
	if err != nil {
		return err
	}
	if next != "" {
		setNextLink(w, r.URL.Path, r.URL.Query().Get("n"), next)
	}
	// The repository as the client named it: the model, or its image form.
	repository := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v2/"), "/tags/list")
	return writeJSON(w, http.StatusOK, struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{repository, page})
}

// maxPage bounds the entries of one page of a list.
const maxPage = 10000

// paginate sorts names and returns the page the request's n and last ask
// for, and the last name of the page when more follow.
func paginate(r *http.Request, names []string) (page []string, next string, err error) {
	slices.Sort(names)
	q := r.URL.Query()
	if last := q.Get("last"); last != "" {
		i, _ := slices.BinarySearch(names, last)
		if i < len(names) && names[i] == last {
			i++
		}
		names = names[i:]
	}
	n := len(names)
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return nil, "", spec.Errorf(spec.ErrorParameterInvalid, "n=%q is not a count: use a number from 0 to %d", s, maxPage)
		}
		n = v
	}
	n = min(n, maxPage, len(names))
	page = names[:n]
	if n < len(names) && n > 0 {
		next = page[n-1]
	}
	return page, next, nil
}

// setNextLink sets the Link header to the next page of a list.
func setNextLink(w http.ResponseWriter, path, n, last string) {
	q := url.Values{"last": {last}}
	if n != "" {
		q.Set("n", n)
	}
	w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, path, q.Encode()))
}

// ociGetManifest answers a manifest by tag or digest, with its media
// type; a tag of a modelx version is answered with the version's OCI view
// (ociview.go).
func (reg *Registry) ociGetManifest(w http.ResponseWriter, r *http.Request) error {
	repo, name, ref, err := manifestParams(r)
	if err != nil {
		return err
	}
	d, data, err := reg.readManifest(r.Context(), repo, name, ref)
	if err != nil {
		return err
	}
	if ref.Tag != "" { // by digest, the bytes must hash to it: served as stored
		if d, data, err = reg.viewIfModelx(r.Context(), repo, name, d, data); err != nil {
			return err
		}
	}
	serveManifest(w, r, d, data, ref.Tag != "")
	return nil
}

// ociPutManifest stores an OCI manifest or index (or a modelx manifest,
// by its media type) by tag or digest.
func (reg *Registry) ociPutManifest(w http.ResponseWriter, r *http.Request) error {
	data, release, err := reg.readManifestBody(w, r)
	if err != nil {
		return err
	}
	defer release()
	repo, name, ref, err := manifestParams(r)
	if err != nil {
		return err
	}
	contentType, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	var mt *manifestToStore
	if strings.TrimSpace(contentType) == spec.MediaTypeManifest || manifestMediaType(data) == spec.MediaTypeManifest {
		if mt, err = parsePushedModelxManifest(data); err != nil {
			return err
		}
	} else {
		m, err := spec.ParseOCIManifest(data, contentType)
		if err != nil {
			return err
		}
		mt = ociManifest(data, m)
	}
	// A push by digest may name tags as ?tag= parameters (spec 1.1+).
	tags := r.URL.Query()["tag"]
	for _, tag := range tags {
		if ref.Digest == "" {
			return spec.Errorf(spec.ErrorParameterInvalid, "?tag= goes with a push by digest; this push is by tag %s", ref.Tag)
		}
		if err := spec.ValidateTag(tag); err != nil {
			return err
		}
	}
	if err := reg.storeManifest(r.Context(), repo, name, ref, tags, mt); err != nil {
		return err
	}
	h := w.Header()
	for _, tag := range tags {
		h.Add("OCI-Tag", tag)
	}
	h.Set(spec.OCIDigestHeader, string(mt.digest))
	h.Set("Location", "/v2/"+repo+"/"+name+"/manifests/"+string(mt.digest))
	if mt.subject != nil {
		h.Set("OCI-Subject", string(mt.subject.Digest))
	}
	w.WriteHeader(http.StatusCreated)
	return nil
}

// ociManifest is what storeManifest needs of an OCI manifest or index:
// the blobs it names (but non-distributable layers), the manifests an
// index lists, and its subject.
func ociManifest(data []byte, m *spec.OCIManifest) *manifestToStore {
	d := digest.FromBytes(data)
	mt := &manifestToStore{data: data, digest: d, mediaType: m.MediaType}
	var size int64
	if m.Config != nil {
		mt.blobs = append(mt.blobs, spec.Descriptor{Name: "config", Digest: m.Config.Digest, Size: m.Config.Size})
		size += m.Config.Size
	}
	for i, l := range m.Layers {
		size += l.Size
		if !spec.IsNondistributable(l.MediaType) {
			mt.blobs = append(mt.blobs, spec.Descriptor{Name: fmt.Sprintf("layers[%d]", i), Digest: l.Digest, Size: l.Size})
		}
	}
	for _, desc := range m.Manifests {
		mt.manifests = append(mt.manifests, desc.Digest)
	}
	mt.indexAnnotations = map[string]string{spec.AnnotationModelSize: strconv.FormatInt(size, 10)}
	if m.Subject != nil {
		mt.subject = m.Subject
		mt.referrer = spec.OCIDescriptor{MediaType: m.MediaType, Digest: d, Size: int64(len(data)),
			ArtifactType: m.ArtifactTypeOf(), Annotations: m.Annotations}
	}
	return mt
}

// writeReferrer records that manifest desc refers to subject, for the
// referrers API.
func (reg *Registry) writeReferrer(ctx context.Context, repo, name string, subject digest.Digest, desc spec.OCIDescriptor) error {
	data, err := json.Marshal(desc)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	if err := reg.store.Put(ctx, referrerKey(repo, name, subject, desc.Digest), bytes.NewReader(data), int64(len(data)), sum[:]); err != nil {
		return internal("write referrer", err)
	}
	return nil
}

// ociReferrers lists the manifests of the model whose subject is the
// digest, as an OCI index; ?artifactType= keeps those of one type.
func (reg *Registry) ociReferrers(w http.ResponseWriter, r *http.Request) error {
	repo, name, subject, err := blobParams(r)
	if err != nil {
		return err
	}
	artifactType := r.URL.Query().Get("artifactType")
	list := []spec.OCIDescriptor{}
	err = reg.store.List(r.Context(), referrersPrefix(repo, name, subject), func(info storage.Info) error {
		data, _, err := storage.ReadAll(r.Context(), reg.store, info.Key, reg.opts.MaxManifestSize)
		if errors.Is(err, storage.ErrNotFound) {
			return nil // deleted since the listing
		}
		if err != nil {
			return err
		}
		var desc spec.OCIDescriptor
		if json.Unmarshal(data, &desc) != nil {
			reg.log.WarnContext(r.Context(), "referrer record is corrupt; skipping it", "key", info.Key)
			return nil
		}
		if artifactType == "" || desc.ArtifactType == artifactType {
			list = append(list, desc)
		}
		return nil
	})
	if err != nil {
		return internal("list referrers", err)
	}
	if artifactType != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	data, err := json.Marshal(struct {
		SchemaVersion int                  `json:"schemaVersion"`
		MediaType     string               `json:"mediaType"`
		Manifests     []spec.OCIDescriptor `json:"manifests"`
	}{2, spec.MediaTypeOCIIndex, list})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", spec.MediaTypeOCIIndex)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
	return nil
}

// ociDeleteManifest deletes a tag, or a manifest by digest: every tag on
// it, the manifest itself (a GET by digest answers 404 afterwards, as OCI
// clients expect) and its referrer record. A held manifest is refused.
func (reg *Registry) ociDeleteManifest(w http.ResponseWriter, r *http.Request) error {
	repo, name, ref, err := manifestParams(r)
	if err != nil {
		return err
	}
	if ref.Tag != "" {
		return reg.deleteManifest(w, r)
	}
	ctx := r.Context()
	d, data, err := reg.readManifest(ctx, repo, name, ref)
	if err != nil {
		return err
	}
	if err := reg.refuseHeld(ctx, repo, name, d); err != nil {
		return err
	}
	idx, err := reg.updateIndex(ctx, modelIndexKey(repo, name), func(idx *spec.Index) (bool, error) {
		before := len(idx.Manifests)
		for _, desc := range idx.Manifests {
			if desc.Digest == d {
				if err := reg.checkMutable(repo, name, desc.Name); err != nil {
					return false, err
				}
			}
		}
		idx.Manifests = slices.DeleteFunc(idx.Manifests, func(desc spec.Descriptor) bool { return desc.Digest == d })
		return len(idx.Manifests) != before, nil
	})
	if err != nil {
		return err
	}
	key := manifestKey(repo, name, d)
	if err := reg.store.Delete(ctx, key); err != nil {
		return internal("delete manifest", err)
	}
	reg.manifests.remove(key)
	if mt, err := parseStoredManifest(data); err == nil && mt.subject != nil {
		if err := reg.store.Delete(ctx, referrerKey(repo, name, mt.subject.Digest, d)); err != nil {
			return internal("delete referrer", err)
		}
	}
	if len(idx.Manifests) == 0 {
		if err := reg.removeModelFromGlobal(ctx, repo, name); err != nil {
			return err
		}
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// ociDeleteBlob takes the model's link to a blob away: the model no longer
// holds it, and a GET answers 404. The bytes stay for the other models
// that hold them, until garbage collection.
func (reg *Registry) ociDeleteBlob(w http.ResponseWriter, r *http.Request) error {
	repo, name, d, err := blobParams(r)
	if err != nil {
		return err
	}
	if _, err := reg.blobLinkedTo(r.Context(), repo, name, d); err != nil {
		return err
	}
	if err := reg.dropLink(r.Context(), repo, name, d); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}
