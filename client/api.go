package client

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client/credentials"
	"modelx.io/modelx/client/transport"
	"modelx.io/modelx/internal/version"
	"modelx.io/modelx/spec"
)

// checksumHeader carries the base64 sha256 on a redirected (presigned) upload.
const checksumHeader = "X-Amz-Checksum-Sha256"

// API is a thin client of one registry's HTTP API: it builds requests and
// decodes answers. What every request needs (retries with backoff, the
// stall guard, the bearer token for the registry alone, tracing) is the
// client/transport stack under its *http.Client. It follows blob redirects
// to presigned URLs by hand and turns error envelopes into *Error.
type API struct {
	base  string
	http  *http.Client
	stack *transport.Stack
}

// DefaultStallTimeout is how long a transfer may make no progress before
// the client gives up on that request (and retries it).
const DefaultStallTimeout = transport.DefaultStallTimeout

// ErrStalled reports a request that stopped making progress.
var ErrStalled = transport.ErrStalled

// ErrConnectionClosed reports a response cut off in the middle of its
// body: the server went away (killed, restarted, out of memory), or
// something on the way closed the connection.
var ErrConnectionClosed = errors.New("closed the connection in the middle of the transfer")

// SetStallTimeout changes how long a request may make no progress; d <= 0
// restores DefaultStallTimeout. Call it before the first request.
func (a *API) SetStallTimeout(d time.Duration) {
	if d <= 0 {
		d = DefaultStallTimeout
	}
	a.stack.StallGuard.Timeout = d
}

// Error is a failed registry request: the status, the API error, and a
// hint that says what to do about it.
type Error struct {
	Status   int
	Registry string
	API      spec.Error
}

// Error names the registry, the API error and, for 401/403, what to do.
func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %s", e.Registry, e.API.Error())
	if strings.HasPrefix(string(e.API.Code), "STORAGE_") {
		// A presigned URL refused: credentials are not the cause.
		switch e.Status {
		case http.StatusForbidden:
			msg += "; the presigned URL was refused: check that this machine's clock is right, and retry (a new URL is signed each time)"
		case http.StatusInsufficientStorage:
			msg += "; the registry's object store is full, so nothing was stored: its operator must free space or grow it, then run the command again"
		}
		return msg
	}
	switch e.Status {
	case http.StatusUnauthorized:
		msg += fmt.Sprintf("; run `modelx login %s` (or set MODELX_TOKEN)", e.Registry)
	case http.StatusForbidden:
		msg += "; ask the registry's administrator for access"
	}
	return msg
}

// Code returns the API error code of err, or "".
func Code(err error) spec.ErrorCode {
	var e *Error
	if errors.As(err, &e) {
		return e.API.Code
	}
	return ""
}

// NewAPI returns a client of the registry at base over httpClient
// (DefaultHTTPClient() if nil). keychain, if not nil, is asked for the
// registry's bearer token before every request to the registry.
func NewAPI(base string, httpClient *http.Client, keychain credentials.Keychain) *API {
	if httpClient == nil {
		httpClient = DefaultHTTPClient()
	}
	opts := transport.Options{Registry: base, UserAgent: UserAgent}
	if keychain != nil {
		opts.Token = func(ctx context.Context) (string, error) { return keychain.Resolve(ctx, base) }
	}
	// Redirects are followed by hand: the API tells presigned URLs apart.
	c := *httpClient
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	stack := transport.New(c.Transport, opts)
	c.Transport = stack
	return &API{base: base, http: &c, stack: stack}
}

// UserAgent names this client in every request it sends, so registry and
// object-store logs tell modelx's requests apart: "modelx/VERSION (OS/ARCH)".
var UserAgent = "modelx/" + version.String("") + " (" + runtime.GOOS + "/" + runtime.GOARCH + ")"

// DefaultHTTPClient is tuned for many parallel large transfers.
func DefaultHTTPClient() *http.Client { return transport.DefaultHTTPClient() }

// body is a request body, opened afresh for every attempt on its first
// read (see transport.LazyBody).
type body struct {
	open   func() (io.ReadCloser, error)
	size   int64
	opened atomic.Bool // some attempt opened the body
}

// openAndMark opens the body and records that it was.
func (b *body) openAndMark() (io.ReadCloser, error) {
	rc, err := b.open()
	if err == nil {
		b.opened.Store(true)
	}
	return rc, err
}

func bytesBody(b []byte) *body {
	return &body{open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, size: int64(len(b))}
}

// do sends a request to the registry (path starting with "/") or to an
// absolute presigned URL. The transport stack retries transient failures;
// do turns a failure, or a retryable answer that stayed one, into an
// error. The caller closes the response body.
func (a *API) do(ctx context.Context, method, target string, b *body, header http.Header) (*http.Response, error) {
	presigned := target != "" && target[0] != '/'
	if !presigned {
		target = a.base + target
	}
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return nil, err
	}
	if b != nil {
		req.ContentLength = b.size
		req.Body = http.NoBody
		if b.size > 0 {
			req.GetBody = transport.LazyBody(b.openAndMark)
			req.Body, _ = req.GetBody()
		}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, a.requestError(ctx, err, target, presigned)
	}
	if transport.Retryable(resp.StatusCode) {
		return nil, a.errorFrom(resp, target, presigned)
	}
	resp.Body = &cutBody{ReadCloser: resp.Body, ctx: ctx, source: a.source(target, presigned)}
	return resp, nil
}

// requestError explains a request that got no answer.
func (a *API) requestError(ctx context.Context, err error, target string, presigned bool) error {
	var local *transport.LocalError
	var urlErr *url.Error
	if presigned && errors.As(err, &urlErr) {
		// The signed query is a credential: never in an error.
		urlErr.URL = withoutQuery(urlErr.URL)
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.As(err, &local):
		return local.Err // a local file or token, not the network
	case errors.Is(err, ErrStalled):
		if errors.As(err, &urlErr) {
			err = urlErr.Err // the stall names the timeout, not the URL
		}
	case !presigned && transport.IsPlainHTTPAnswer(err):
		return &PlainHTTPError{Registry: a.base}
	}
	return a.networkError(err, target, presigned)
}

// withoutQuery is raw with its query and fragment cut off.
func withoutQuery(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a presigned URL)"
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

// cutBody is a response body whose read errors say when the peer cut the
// connection short.
type cutBody struct {
	io.ReadCloser
	ctx    context.Context
	source string // who answered, for errors: "registry URL" or "object store HOST"
}

func (b *cutBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.ctx.Err() == nil && !errors.Is(err, ErrStalled) && connectionCut(err) {
		err = fmt.Errorf("%s %w (%w)", b.source, ErrConnectionClosed, err)
	}
	return n, err
}

// connectionCut reports whether a read error means the peer closed or
// reset the connection before the body's end.
func connectionCut(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED)
}

// source names who answers a request to target, for errors: the registry,
// or the object store of a presigned URL (its host only; the query is a
// signature).
func (a *API) source(target string, presigned bool) string {
	if !presigned {
		return "registry " + a.base
	}
	if u, err := url.Parse(target); err == nil {
		return "object store " + u.Host
	}
	return "object store"
}

// PlainHTTPError is a registry addressed as https:// that answered in
// plain HTTP: its URL should say http://, or it should turn TLS on.
type PlainHTTPError struct {
	// Registry is the base URL the request went to, https://HOST[:PORT].
	Registry string
}

// Error says what happened and suggests the http:// URL.
func (e *PlainHTTPError) Error() string {
	return fmt.Sprintf("registry %s answers in plain HTTP, not HTTPS: use %s (unencrypted: anyone on the path can read and change the traffic), or turn TLS on at the registry", e.Registry, e.PlainURL())
}

// PlainURL is Registry with http:// instead of https://; the port of
// https (443) is written out, as a plain HTTP server there must have it.
func (e *PlainHTTPError) PlainURL() string {
	u, err := url.Parse(e.Registry)
	if err != nil {
		return e.Registry
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	return "http://" + host
}

// tlsPortAnswer is what Go's TLS servers (modelxd among them) answer a
// plain HTTP request with, in a 400 response.
const tlsPortAnswer = "Client sent an HTTP request to an HTTPS server"

// UntrustedCAError is a registry whose TLS certificate is signed by a CA
// this machine does not trust. A program that can be given the CA (the
// CLI's --ca-file) says how with Advise.
type UntrustedCAError struct {
	// Registry is the registry's base URL.
	Registry string
	// Err is the TLS verification error.
	Err error
}

// Error says what is wrong and that the CA must be trusted.
func (e *UntrustedCAError) Error() string {
	return e.Advise("make this machine trust the CA's certificate")
}

// Advise is the error's message with fix as the advice.
func (e *UntrustedCAError) Advise(fix string) string {
	return fmt.Sprintf("registry %s: its TLS certificate is signed by a CA this machine does not trust; %s: %v", e.Registry, fix, e.Err)
}

// Unwrap returns the TLS verification error.
func (e *UntrustedCAError) Unwrap() error { return e.Err }

// networkError explains a request that got no answer: from the registry,
// or (presigned) from the object store the registry sent the client to,
// which only the registry's operator can make reachable.
func (a *API) networkError(err error, target string, presigned bool) error {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	peer, notFound, down := "registry "+a.base, "check the registry URL", "check that it is running and the URL is right"
	if presigned {
		peer = a.source(target, true) + " (where registry " + a.base + " sends blob transfers)"
		notFound = "the registry's operator must make the store's address resolvable from clients"
		down = "the registry's operator must make the store reachable from clients"
	}
	switch {
	case errors.As(err, &unknownCA):
		return &UntrustedCAError{Registry: a.base, Err: err}
	case errors.As(err, &badHost):
		return fmt.Errorf("registry %s: its TLS certificate is for another host; use the host name the certificate names: %w", a.base, err)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("%s is unreachable: host %q not found; %s", peer, dnsErr.Name, notFound)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return fmt.Errorf("%s is unreachable (%v); %s", peer, opErr.Err, down)
	}
	return fmt.Errorf("%s: %w", a.base, err)
}

// errorFrom reads an error answer and closes its body.
func (a *API) errorFrom(resp *http.Response, target string, presigned bool) error {
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &Error{Status: resp.StatusCode, Registry: a.base}
	if presigned {
		// An object-store error: S3 XML, not our envelope.
		store := a.source(target, true)
		msg := fmt.Sprintf("%s refused the transfer (HTTP %d)", store, resp.StatusCode)
		var s3err struct{ Code, Message string }
		if xml.Unmarshal(data, &s3err) == nil && s3err.Code != "" {
			msg = fmt.Sprintf("%s refused the transfer (HTTP %d %s: %s)", store, resp.StatusCode, printable(s3err.Code, 64), printable(s3err.Message, 200))
		}
		e.API = spec.Error{Code: spec.ErrorCode("STORAGE_" + strconv.Itoa(resp.StatusCode)), Message: msg}
		return e
	}
	if err := json.Unmarshal(data, &e.API); err != nil || e.API.Code == "" {
		e.API = spec.Error{Code: spec.ErrorCode("HTTP_" + strconv.Itoa(resp.StatusCode)), Message: http.StatusText(resp.StatusCode)}
		if resp.StatusCode == http.StatusBadRequest && bytes.Contains(data, []byte(tlsPortAnswer)) && strings.HasPrefix(a.base, "http://") {
			e.API.Message = fmt.Sprintf("the registry's port speaks HTTPS, not plain HTTP: use %s", "https://"+strings.TrimPrefix(a.base, "http://"))
		}
	}
	return e
}

// printable keeps at most n printable characters of text a server sent,
// so it cannot move the cursor or recolour the terminal it is printed on.
func printable(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= n {
			b.WriteString("…")
			break
		}
		if unicode.IsPrint(r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func modelPath(repo, name string) string { return "/" + repo + "/" + name }

// GetManifest fetches a manifest by tag or digest, checks that its bytes
// hash to the digest the registry (or the reference) names, and parses it.
func (a *API) GetManifest(ctx context.Context, repo, name, reference string) (*spec.Manifest, []byte, digest.Digest, error) {
	resp, err := a.do(ctx, http.MethodGet, modelPath(repo, name)+"/manifests/"+reference, nil, nil)
	if err != nil {
		return nil, nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, "", a.errorFrom(resp, "", false)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, spec.MaxManifestSize+1))
	if err != nil {
		return nil, nil, "", fmt.Errorf("read manifest: %w", err)
	}
	if len(data) > spec.MaxManifestSize {
		return nil, nil, "", fmt.Errorf("manifest %s/%s:%s from %s is over the %d-byte limit; the registry is broken or hostile", repo, name, reference, a.base, spec.MaxManifestSize)
	}
	d := digest.FromBytes(data)
	want := digest.Digest(resp.Header.Get(spec.DigestHeader))
	if ref, err := spec.ParseReference(reference); err == nil && ref.Digest != "" {
		want = ref.Digest
	}
	if want != "" && want != d {
		return nil, nil, "", fmt.Errorf("manifest %s/%s:%s: received bytes hash to %s, not %s; the registry or the network corrupted it", repo, name, reference, d, want)
	}
	m, err := spec.ParseManifest(data)
	if err != nil {
		var probe struct {
			MediaType string `json:"mediaType"`
		}
		if json.Unmarshal(data, &probe) == nil && spec.IsOCIManifestType(probe.MediaType) {
			return nil, nil, "", fmt.Errorf("manifest %s/%s@%s is an OCI manifest (%s), which modelx reads through its modelx view: pull it by tag, or by the digest the tag's modelx view has (modelx info %s/%s:TAG shows it)", repo, name, d, probe.MediaType, repo, name)
		}
		return nil, nil, "", fmt.Errorf("manifest %s/%s:%s: %w", repo, name, reference, err)
	}
	return m, data, d, nil
}

// ManifestDigest asks which manifest a tag or digest names, without
// fetching it (a HEAD request); it returns "" when the model has no such
// tag or manifest.
func (a *API) ManifestDigest(ctx context.Context, repo, name, reference string) (digest.Digest, error) {
	resp, err := a.do(ctx, http.MethodHead, modelPath(repo, name)+"/manifests/"+reference, nil, nil)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		d := digest.Digest(resp.Header.Get(spec.DigestHeader))
		if err := spec.ValidateDigest(d); err != nil {
			return "", fmt.Errorf("%s: HEAD manifest %s/%s:%s answered no valid %s header: %w", a.base, repo, name, reference, spec.DigestHeader, err)
		}
		return d, nil
	case http.StatusNotFound:
		return "", nil
	}
	return "", &Error{Status: resp.StatusCode, Registry: a.base, API: spec.Error{Code: spec.ErrorCode("HTTP_" + strconv.Itoa(resp.StatusCode)), Message: "HEAD manifest " + repo + "/" + name + ":" + reference + ": " + http.StatusText(resp.StatusCode)}}
}

// ErrNoImageForm reports a registry that serves no image form of a
// version at /v2/REPOSITORY/NAME/image: one that predates the image form.
var ErrNoImageForm = errors.New("the registry serves no image form of the version")

// ImageDigest asks for the digest of the image form of the version that
// reference (a tag, or the version's manifest digest) names: the OCI image
// index at /v2/REPOSITORY/NAME/image, which a Kubernetes image volume
// mounts. It is a HEAD request; the registry makes the form on the first
// one for a version, reading its files once. An answer of 404, or one
// without a digest, is an error wrapping ErrNoImageForm; another refusal
// is asked again with GET, for the registry's error message.
func (a *API) ImageDigest(ctx context.Context, repo, name, reference string) (digest.Digest, error) {
	path := "/v2" + modelPath(repo, name) + "/image/manifests/" + reference
	accept := http.Header{"Accept": {spec.MediaTypeOCIIndex + ", " + spec.MediaTypeOCIManifest}}
	resp, err := a.do(ctx, http.MethodHead, path, nil, accept)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		d := digest.Digest(resp.Header.Get(spec.OCIDigestHeader))
		if d == "" {
			return "", fmt.Errorf("%s: HEAD %s answered no %s header: %w", a.base, path, spec.OCIDigestHeader, ErrNoImageForm)
		}
		if err := spec.ValidateDigest(d); err != nil {
			return "", fmt.Errorf("%s: HEAD %s answered an invalid %s header: %w", a.base, path, spec.OCIDigestHeader, err)
		}
		return d, nil
	case http.StatusNotFound:
		return "", fmt.Errorf("%s: HEAD %s answered 404: %w (no such version, or a modelxd that predates the image form)", a.base, path, ErrNoImageForm)
	}
	// A HEAD answer has no body: ask again for the error envelope.
	headStatus := resp.StatusCode
	if resp, err = a.do(ctx, http.MethodGet, path, nil, accept); err != nil {
		return "", err
	}
	if resp.StatusCode == http.StatusOK {
		resp.Body.Close()
		return "", fmt.Errorf("%s: HEAD %s answered HTTP %d, and GET 200: the registry is inconsistent", a.base, path, headStatus)
	}
	return "", a.errorFrom(resp, "", false)
}

// PutManifest stores a manifest under a tag or digest and returns its digest.
func (a *API) PutManifest(ctx context.Context, repo, name, reference string, data []byte) (digest.Digest, error) {
	resp, err := a.do(ctx, http.MethodPut, modelPath(repo, name)+"/manifests/"+reference, bytesBody(data),
		http.Header{"Content-Type": {spec.MediaTypeManifest}})
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", a.errorFrom(resp, "", false)
	}
	resp.Body.Close()
	return digest.FromBytes(data), nil
}

// DeleteManifest removes a tag, or every tag of a digest.
func (a *API) DeleteManifest(ctx context.Context, repo, name, reference string) error {
	return a.expect(ctx, http.MethodDelete, modelPath(repo, name)+"/manifests/"+reference, http.StatusAccepted, nil)
}

// DeleteIndex removes every tag of a model.
func (a *API) DeleteIndex(ctx context.Context, repo, name string) error {
	return a.expect(ctx, http.MethodDelete, modelPath(repo, name)+"/index", http.StatusAccepted, nil)
}

// Index returns a model's tags, or the global index of models when repo is "".
func (a *API) Index(ctx context.Context, repo, name, search string) (spec.Index, error) {
	path := "/"
	if repo != "" {
		path = modelPath(repo, name) + "/index"
	}
	if search != "" {
		path += "?search=" + url.QueryEscape(search)
	}
	var idx spec.Index
	err := a.expect(ctx, http.MethodGet, path, http.StatusOK, &idx)
	return idx, err
}

// GarbageCollect asks the registry to collect one model's garbage now.
func (a *API) GarbageCollect(ctx context.Context, repo, name string) (spec.GCResult, error) {
	var res spec.GCResult
	err := a.expect(ctx, http.MethodPost, modelPath(repo, name)+"/garbage-collect", http.StatusOK, &res)
	return res, err
}

// GarbageCollectRegistry asks the registry to collect the whole registry now.
func (a *API) GarbageCollectRegistry(ctx context.Context) (spec.GCResult, error) {
	var res spec.GCResult
	err := a.expect(ctx, http.MethodPost, "/garbage-collect", http.StatusOK, &res)
	return res, err
}

func (a *API) expect(ctx context.Context, method, path string, status int, out any) error {
	resp, err := a.do(ctx, method, path, nil, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != status {
		return a.errorFrom(resp, "", false)
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("%s %s: undecodable answer: %w", method, path, err)
	}
	return nil
}

// BlobExists asks whether the registry has the blob with this size.
func (a *API) BlobExists(ctx context.Context, repo, name string, d digest.Digest, size int64) (bool, error) {
	resp, err := a.do(ctx, http.MethodHead, modelPath(repo, name)+"/blobs/"+string(d), nil, nil)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.ContentLength == size, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, &Error{Status: resp.StatusCode, Registry: a.base, API: spec.Error{Code: spec.ErrorCode("HTTP_" + strconv.Itoa(resp.StatusCode)), Message: "HEAD blob " + string(d) + ": " + http.StatusText(resp.StatusCode)}}
}

// PutBlob uploads a blob and reports whether its bytes were sent: a blob
// the model holds already costs no body, because the PUT asks with Expect:
// 100-continue and the registry answers 201 at once. open is called for
// each attempt that sends the bytes. When the registry redirects, the bytes
// go to the presigned URL with the length and the sha256 checksum the
// signature binds; the registry links them to the model when a manifest
// names the blob, or when the blob is offered again.
func (a *API) PutBlob(ctx context.Context, repo, name string, d digest.Digest, size int64, open func() (io.ReadCloser, error)) (sent bool, err error) {
	return a.MountBlob(ctx, repo, name, "", d, size, open)
}

// maxUploadRounds bounds how often one blob PUT asks the registry for a
// presigned URL after the object store refused the previous one with 409.
const maxUploadRounds = 3

// MountBlob is PutBlob with a source model ("REPOSITORY/NAME", or "" for
// none): if the caller may pull the source and it holds the blob, the
// registry links the blob to the model without any bytes moving.
func (a *API) MountBlob(ctx context.Context, repo, name, from string, d digest.Digest, size int64, open func() (io.ReadCloser, error)) (sent bool, err error) {
	b := &body{open: open, size: size}
	path := modelPath(repo, name) + "/blobs/" + string(d)
	if from != "" {
		path += "?from=" + url.QueryEscape(from)
	}
	for round := 0; ; round++ {
		resp, err := a.do(ctx, http.MethodPut, path, b,
			http.Header{"Expect": {"100-continue"}, "Content-Type": {"application/octet-stream"}})
		if err != nil {
			return false, err
		}
		switch resp.StatusCode {
		case http.StatusCreated:
			resp.Body.Close()
			return b.opened.Load() || size == 0, nil
		case http.StatusFound, http.StatusTemporaryRedirect, http.StatusSeeOther:
		default:
			return false, a.errorFrom(resp, "", false)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if loc == "" {
			return false, fmt.Errorf("%s: redirect without Location for blob %s", a.base, d)
		}
		sum, err := hex.DecodeString(d.Encoded())
		if err != nil {
			return false, err
		}
		resp, err = a.do(ctx, http.MethodPut, loc, b, http.Header{checksumHeader: {base64.StdEncoding.EncodeToString(sum)}})
		if err != nil {
			return false, err
		}
		if resp.StatusCode == http.StatusConflict && round < maxUploadRounds-1 {
			// The store refused this write for now (some S3 servers do while
			// another request removes the key's parent "directory"): ask
			// the registry again, for a fresh URL.
			resp.Body.Close()
			continue
		}
		if resp.StatusCode/100 != 2 {
			return false, a.errorFrom(resp, loc, true)
		}
		resp.Body.Close()
		return true, nil
	}
}

// GetBlob opens a blob from offset for length bytes (length < 0: to the
// end), following a redirect to a presigned URL with the same range.
func (a *API) GetBlob(ctx context.Context, repo, name string, d digest.Digest, offset, length int64) (io.ReadCloser, error) {
	if length == 0 {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	header := rangeHeader(offset, length)
	resp, err := a.do(ctx, http.MethodGet, modelPath(repo, name)+"/blobs/"+string(d), nil, header)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusFound || resp.StatusCode == http.StatusTemporaryRedirect {
		resp.Body.Close()
		return a.GetPresigned(ctx, resp.Header.Get("Location"), offset, length)
	}
	return a.blobBody(resp, header, offset, false)
}

// GetPresigned reads length bytes from offset (length < 0: to the end) of
// the blob at a presigned URL, such as a BlobLocation's Href.
func (a *API) GetPresigned(ctx context.Context, href string, offset, length int64) (io.ReadCloser, error) {
	if length == 0 {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	header := rangeHeader(offset, length)
	resp, err := a.do(ctx, http.MethodGet, href, nil, header)
	if err != nil {
		return nil, err
	}
	return a.blobBody(resp, header, offset, true)
}

// rangeHeader asks for length bytes from offset (length < 0: to the end),
// or for the whole blob when that is what the range covers.
func rangeHeader(offset, length int64) http.Header {
	header := http.Header{}
	if offset > 0 || length >= 0 {
		r := fmt.Sprintf("bytes=%d-", offset)
		if length >= 0 {
			r += strconv.FormatInt(offset+length-1, 10)
		}
		header.Set("Range", r)
	}
	return header
}

// blobBody returns the body of a blob GET sent with header, or the error
// its status says.
func (a *API) blobBody(resp *http.Response, header http.Header, offset int64, presigned bool) (io.ReadCloser, error) {
	want := http.StatusOK
	if header.Get("Range") != "" {
		want = http.StatusPartialContent
	}
	if resp.StatusCode != want {
		if resp.StatusCode == http.StatusOK && offset == 0 {
			return resp.Body, nil // the server ignored a range starting at 0; the caller limits
		}
		return nil, a.errorFrom(resp, resp.Request.URL.String(), presigned)
	}
	return resp.Body, nil
}

// maxBatchResponseSize bounds a blob batch answer: MaxBatchBlobs presigned
// URLs of a few KiB each.
const maxBatchResponseSize = 16 << 20

// BlobBatch sends req's blobs to the registry's batch endpoint (POST
// …/blobs/batch), up to spec.MaxBatchBlobs a request, and returns its
// answers by digest: for a download, where to read each blob; for an
// upload, whether it is present or where to send it. Answers for blobs req
// did not list are dropped, and so are URLs that are not http or https: a
// registry does not get to point the client at a file or another scheme
// (the bytes are verified whatever answers). A registry without the
// endpoint answers with an error, as does one that refuses the request.
func (a *API) BlobBatch(ctx context.Context, repo, name string, req spec.BlobBatchRequest) (map[digest.Digest]spec.BlobLocation, error) {
	asked := make(map[digest.Digest]bool, len(req.Blobs))
	for _, b := range req.Blobs {
		asked[b.Digest] = true
	}
	out := map[digest.Digest]spec.BlobLocation{}
	for part := range slices.Chunk(req.Blobs, spec.MaxBatchBlobs) {
		data, err := json.Marshal(spec.BlobBatchRequest{Operation: req.Operation, From: req.From, Blobs: part})
		if err != nil {
			return out, err
		}
		resp, err := a.do(ctx, http.MethodPost, modelPath(repo, name)+"/blobs/batch", bytesBody(data), http.Header{"Content-Type": {"application/json"}})
		if err != nil {
			return out, err
		}
		if resp.StatusCode != http.StatusOK {
			return out, a.errorFrom(resp, "", false)
		}
		var answer spec.BlobBatchResponse
		err = json.NewDecoder(io.LimitReader(resp.Body, maxBatchResponseSize)).Decode(&answer)
		resp.Body.Close()
		if err != nil {
			return out, fmt.Errorf("%s: unreadable answer to a blob batch request: %w", a.base, err)
		}
		for _, loc := range answer.Blobs {
			if !asked[loc.Digest] || loc.Error != nil {
				continue
			}
			if u, err := url.Parse(loc.Href); loc.Href != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
				continue
			}
			out[loc.Digest] = loc
		}
	}
	return out, nil
}

// sendOffered sends a blob of the model as loc, the registry's answer to an
// upload batch offer of it (the zero BlobLocation: none), says: to its URL
// while that is usable. Without one, or when the store refuses it, the
// blob is offered with a PUT to the registry (MountBlob, with from), which
// hands out a fresh URL or says what is wrong. It reports whether the bytes
// were sent.
func (a *API) sendOffered(ctx context.Context, repo, name, from string, d digest.Digest, size int64, open func() (io.ReadCloser, error), loc spec.BlobLocation) (sent bool, err error) {
	if usableURL(loc) {
		err := a.PutPresigned(ctx, loc.Href, loc.Header, size, open)
		if err == nil || ctx.Err() != nil {
			return err == nil, err
		}
	}
	return a.MountBlob(ctx, repo, name, from, d, size, open)
}

// PutPresigned sends a blob of size bytes, read through open, to a
// presigned PUT URL (an upload BlobLocation's Href) with the headers it
// came with.
func (a *API) PutPresigned(ctx context.Context, href string, header map[string]string, size int64, open func() (io.ReadCloser, error)) error {
	h := http.Header{}
	for k, v := range header {
		h.Set(k, v)
	}
	resp, err := a.do(ctx, http.MethodPut, href, &body{open: open, size: size}, h)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return a.errorFrom(resp, href, true)
	}
	return nil
}
