// Package s3 is the S3 storage backend on aws-sdk-go-v2: custom endpoints
// and path-style addressing for S3-compatible servers, presigned GET and PUT
// (the PUT signs Content-Length and x-amz-checksum-sha256), and conditional
// writes with If-None-Match / If-Match.
package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"modelx.io/modelx/storage"
)

// Config configures an S3 backend.
type Config struct {
	// Endpoint is the S3 server's URL; empty means AWS.
	Endpoint string
	// Bucket holds every object; it must exist.
	Bucket string
	// Region signs requests; default "us-east-1".
	Region string
	// AccessKey and SecretKey are static credentials; when empty the default
	// credential chain (environment, shared config, IRSA, instance role) is used.
	AccessKey string
	SecretKey string
	// PathStyle addresses the bucket in the path (http://host/bucket/key),
	// which most S3-compatible servers need.
	PathStyle bool
	// HTTPClient, when set, carries every request.
	HTTPClient *http.Client
	// MultipartThreshold is the size from which Put uploads an object in
	// parts: S3 takes at most 5 GiB in one request. Default 4 GiB; at
	// least 5 MiB, the smallest part S3 accepts.
	MultipartThreshold int64
}

// DefaultMultipartThreshold is the size from which Put uploads in parts.
const DefaultMultipartThreshold = 4 << 30

// minPartSize is the smallest part S3 accepts, but for the last one;
// maxParts the most parts an upload may have.
const (
	minPartSize = 5 << 20
	maxParts    = 10000
)

// Store is a storage.Storage on one S3 bucket. It trusts its keys: reach
// it through storage.Open or storage.Wrap, which validate them.
type Store struct {
	client    *s3.Client
	presign   *s3.PresignClient
	bucket    string
	multipart int64 // Config.MultipartThreshold
}

var (
	_ storage.Storage           = (*Store)(nil)
	_ storage.ConditionalWriter = (*Store)(nil)
	_ storage.Presigner         = (*Store)(nil)
)

// BackendName is the name the backend is registered under (storage.Open).
const BackendName = "s3"

// The backend's settings (storage.Params), each a field of Config.
const (
	ParamEndpoint  = "endpoint"   // Config.Endpoint
	ParamBucket    = "bucket"     // Config.Bucket
	ParamRegion    = "region"     // Config.Region
	ParamAccessKey = "access-key" // Config.AccessKey
	ParamSecretKey = "secret-key" // Config.SecretKey
	ParamPathStyle = "path-style" // Config.PathStyle: true or false
)

func init() { storage.Register(BackendName, open) }

// open is the backend's storage.Factory: New on the Config the params
// describe, then Check, so a bucket that is missing, out of reach or
// without conditional writes fails here rather than on the first request.
func open(ctx context.Context, params storage.Params) (storage.Storage, error) {
	if err := params.Check(BackendName, ParamEndpoint, ParamBucket, ParamRegion, ParamAccessKey, ParamSecretKey, ParamPathStyle); err != nil {
		return nil, err
	}
	pathStyle, err := params.Bool(BackendName, ParamPathStyle)
	if err != nil {
		return nil, err
	}
	st, err := New(ctx, Config{Endpoint: params[ParamEndpoint], Bucket: params[ParamBucket], Region: params[ParamRegion],
		AccessKey: params[ParamAccessKey], SecretKey: params[ParamSecretKey], PathStyle: pathStyle})
	if err != nil {
		return nil, err
	}
	if err := st.Check(ctx); err != nil {
		return nil, err
	}
	return st, nil
}

// New returns a store for cfg. It makes no request; Check does.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3: bucket is required (--s3-bucket)")
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	opts := []func(*config.LoadOptions) error{config.WithRegion(region)}
	if cfg.AccessKey != "" || cfg.SecretKey != "" {
		if cfg.AccessKey == "" || cfg.SecretKey == "" {
			return nil, errors.New("s3: set both the access key and the secret key, or neither to use the default credential chain")
		}
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, "")))
	}
	if cfg.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(cfg.HTTPClient))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS config: %w", err)
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		// Checksums are ours to send (sha256 from the digest); no CRC32 trailers.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	presign := s3.NewPresignClient(client, func(o *s3.PresignOptions) {
		// Keep x-amz-checksum-sha256 a signed header: S3 ignores it as a
		// query parameter, and then would accept any bytes.
		o.Presigner = v4.NewSigner(func(so *v4.SignerOptions) { so.DisableHeaderHoisting = true })
	})
	multipart := cfg.MultipartThreshold
	if multipart <= 0 {
		multipart = DefaultMultipartThreshold
	}
	return &Store{client: client, presign: presign, bucket: cfg.Bucket, multipart: max(multipart, minPartSize)}, nil
}

// Check verifies that the bucket exists and the credentials reach it.
func (s *Store) Check(ctx context.Context) error {
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}); err != nil {
		return fmt.Errorf("s3: bucket %q is not reachable: %w", s.bucket, err)
	}
	// Index updates from several replicas rely on conditional writes; a
	// server that ignores If-None-Match would lose updates silently.
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	key := fmt.Sprintf(".modelx-probe/%x", nonce)
	defer s.Delete(context.WithoutCancel(ctx), key)
	if err := s.PutIfAbsent(ctx, key, []byte("1")); err != nil {
		return fmt.Errorf("s3: bucket %q: a test write failed: %w", s.bucket, err)
	}
	if err := s.PutIfAbsent(ctx, key, []byte("2")); !errors.Is(err, storage.ErrPreconditionFailed) {
		return fmt.Errorf("s3: bucket %q: the object store ignores conditional writes (If-None-Match), which modelxd needs to update tags safely; use an S3 server that supports them (err: %v)", s.bucket, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "NoSuchKey" || ae.ErrorCode() == "NotFound")
}

func isPreconditionFailed(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "PreconditionFailed", "ConditionalRequestConflict":
			return true
		}
	}
	return false
}

func isInvalidRange(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "InvalidRange"
}

func (s *Store) wrap(op, key string, err error) error {
	switch {
	case isNotFound(err):
		return fmt.Errorf("%w: %s", storage.ErrNotFound, key)
	case isPreconditionFailed(err):
		return fmt.Errorf("%w: %s", storage.ErrPreconditionFailed, key)
	case isInvalidRange(err):
		return fmt.Errorf("%w: %s", storage.ErrInvalidRange, key)
	case isInsufficientStorage(err):
		return fmt.Errorf("%w: s3 %s %s: %w", storage.ErrInsufficientStorage, op, key, err)
	}
	return fmt.Errorf("s3 %s %s: %w", op, key, err)
}

// isInsufficientStorage recognises an S3 server out of space: 507, which
// S3-compatible servers on their own disks answer (as InsufficientStorage
// or XMinioStorageFull).
func isInsufficientStorage(err error) bool {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusInsufficientStorage {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "InsufficientStorage" || ae.ErrorCode() == "XMinioStorageFull")
}

func etag(p *string) string { return strings.Trim(aws.ToString(p), `"`) }

// Stat implements storage.Storage.
func (s *Store) Stat(ctx context.Context, key string) (storage.Info, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return storage.Info{}, s.wrap("stat", key, err)
	}
	return storage.Info{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified), ETag: etag(out.ETag)}, nil
}

// ReaderIfChanged implements storage.ConditionalReader with a GET that
// carries If-None-Match, which S3 answers 304 for an unchanged object.
func (s *Store) ReaderIfChanged(ctx context.Context, key, known string) (io.ReadCloser, storage.Info, error) {
	quoted := `"` + known + `"`
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key, IfNoneMatch: &quoted})
	if err != nil {
		var re interface{ HTTPStatusCode() int }
		if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotModified {
			return nil, storage.Info{Key: key, ETag: known}, fmt.Errorf("%w: %s", storage.ErrNotModified, key)
		}
		return nil, storage.Info{}, s.wrap("get", key, err)
	}
	return out.Body, storage.Info{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified), ETag: etag(out.ETag)}, nil
}

// Reader implements storage.Storage.
func (s *Store) Reader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, storage.Info, error) {
	if offset < 0 {
		return nil, storage.Info{}, fmt.Errorf("%w: negative offset %d", storage.ErrInvalidRange, offset)
	}
	if length == 0 {
		// An empty range cannot be asked of S3; stat instead.
		info, err := s.Stat(ctx, key)
		if err != nil {
			return nil, storage.Info{}, err
		}
		if offset > info.Size {
			return nil, storage.Info{}, fmt.Errorf("%w: offset %d of %s (%d bytes)", storage.ErrInvalidRange, offset, key, info.Size)
		}
		return io.NopCloser(strings.NewReader("")), info, nil
	}
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: &key}
	if offset > 0 || length > 0 {
		r := fmt.Sprintf("bytes=%d-", offset)
		if length > 0 {
			r += fmt.Sprint(offset + length - 1)
		}
		in.Range = &r
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		if isInvalidRange(err) {
			// A start exactly at the end is a valid empty read.
			if info, serr := s.Stat(ctx, key); serr == nil && offset == info.Size {
				return io.NopCloser(strings.NewReader("")), info, nil
			}
		}
		return nil, storage.Info{}, s.wrap("get", key, err)
	}
	info := storage.Info{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified), ETag: etag(out.ETag)}
	if out.ContentRange != nil {
		// "bytes a-b/total": the object's size is the total.
		if i := strings.LastIndexByte(*out.ContentRange, '/'); i >= 0 {
			var total int64
			if _, err := fmt.Sscan((*out.ContentRange)[i+1:], &total); err == nil {
				info.Size = total
			}
		}
	}
	return out.Body, info, nil
}

// Put implements storage.Storage. The body streams unsigned; with
// sha256sum it carries x-amz-checksum-sha256, so S3 verifies the bytes, and
// the verifying reader withholds the last bytes of a wrong body so the
// upload aborts before it is complete.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, sha256sum []byte) error {
	if size < 0 {
		return fmt.Errorf("s3 put %s: size is required", key)
	}
	body := storage.NewVerifyingReader(r, size, sha256sum)
	if size >= s.multipart {
		return s.putParts(ctx, key, body, size)
	}
	in := &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: body, ContentLength: aws.Int64(size)}
	if sha256sum != nil {
		in.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(sha256sum))
	}
	_, err := s.client.PutObject(ctx, in, streamingBody)
	if err != nil {
		// The reader's own verdict names the cause better than the transport's.
		if _, rerr := body.Read(nil); rerr != nil && rerr != io.EOF {
			return fmt.Errorf("s3 put %s: %w", key, rerr)
		}
		var ae smithy.APIError
		if errors.As(err, &ae) && (ae.ErrorCode() == "BadDigest" || ae.ErrorCode() == "XAmzContentChecksumMismatch") {
			return fmt.Errorf("%w: s3 put %s: %v", storage.ErrChecksumMismatch, key, err)
		}
		return s.wrap("put", key, err)
	}
	return nil
}

// streamingBody sets up a request whose body streams once: unsigned (its
// sha256 is not known before it is read), and not retried by the SDK, which
// cannot rewind it; a retry would only wait out its backoff before failing
// (a wrong body took up to 0.85 s to be refused). The caller retries.
func streamingBody(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
	o.Retryer = aws.NopRetryer{}
}

// putParts uploads size bytes of body to key as a multipart upload, for
// objects over what one PUT may carry. The parts stream unsigned, with no
// checksum of their own: body is the verifying reader, which withholds
// the last bytes of a wrong body, so the last part fails and the upload
// is aborted: nothing is stored. Readers see the object only once the
// upload completes.
func (s *Store) putParts(ctx context.Context, key string, body io.Reader, size int64) error {
	// 64 MiB parts (the threshold's, if lower), more for objects that
	// would need over maxParts.
	partSize := max(min(int64(64<<20), s.multipart), (size+maxParts-1)/maxParts)
	created, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return s.wrap("put", key, err)
	}
	abort := func(cause error) error {
		// The upload's parts cost storage until aborted, even if the
		// client has gone.
		_, aerr := s.client.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: created.UploadId})
		if aerr != nil {
			return fmt.Errorf("%w (and aborting the multipart upload failed: %v)", cause, aerr)
		}
		return cause
	}
	var parts []types.CompletedPart
	for n, offset := int32(1), int64(0); offset < size; n, offset = n+1, offset+partSize {
		length := min(partSize, size-offset)
		part := io.LimitReader(body, length)
		out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{Bucket: &s.bucket, Key: &key, UploadId: created.UploadId,
			PartNumber: aws.Int32(n), Body: part, ContentLength: aws.Int64(length)},
			streamingBody)
		if err != nil {
			// The reader's own verdict names the cause better than the transport's.
			if _, rerr := body.Read(nil); rerr != nil && rerr != io.EOF {
				return abort(fmt.Errorf("s3 put %s: %w", key, rerr))
			}
			return abort(s.wrap("put", key, err))
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n)})
	}
	// All bytes are read, so the verifying reader has judged them.
	if _, err := body.Read(nil); err != nil && err != io.EOF {
		return abort(fmt.Errorf("s3 put %s: %w", key, err))
	}
	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: created.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		return abort(s.wrap("put", key, err))
	}
	return nil
}

func (s *Store) putSmall(ctx context.Context, key string, data []byte, in *s3.PutObjectInput) error {
	in.Bucket, in.Key = &s.bucket, &key
	in.Body = bytes.NewReader(data)
	in.ContentLength = aws.Int64(int64(len(data)))
	if _, err := s.client.PutObject(ctx, in); err != nil {
		return s.wrap("put", key, err)
	}
	return nil
}

// PutIfAbsent implements storage.ConditionalWriter with If-None-Match: *.
func (s *Store) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	return s.putSmall(ctx, key, data, &s3.PutObjectInput{IfNoneMatch: aws.String("*")})
}

// PutIfMatch implements storage.ConditionalWriter with If-Match.
func (s *Store) PutIfMatch(ctx context.Context, key string, data []byte, etag string) error {
	err := s.putSmall(ctx, key, data, &s3.PutObjectInput{IfMatch: aws.String(`"` + etag + `"`)})
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w: %s", storage.ErrPreconditionFailed, key)
	}
	return err
}

// Copy implements storage.Copier with CopyObject: the bytes stay in the
// store (objects up to 5 GiB, which every modelx blob is).
func (s *Store) Copy(ctx context.Context, src, dst string) error {
	segments := strings.Split(src, "/")
	for i, seg := range segments {
		segments[i] = url.PathEscape(seg)
	}
	source := s.bucket + "/" + strings.Join(segments, "/")
	if _, err := s.client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &s.bucket, Key: &dst, CopySource: &source}); err != nil {
		return s.wrap("copy", src, err)
	}
	return nil
}

// List implements storage.Storage, following continuation tokens past 1,000 keys.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return s.wrap("list", prefix, err)
		}
		for _, o := range page.Contents {
			info := storage.Info{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified), ETag: etag(o.ETag)}
			if err := fn(info); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements storage.Storage.
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key}); err != nil && !isNotFound(err) {
		return s.wrap("delete", key, err)
	}
	return nil
}

// PresignGet implements storage.Presigner.
func (s *Store) PresignGet(ctx context.Context, key string, expires time.Duration) (storage.PresignedRequest, error) {
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key}, s3.WithPresignExpires(expires))
	if err != nil {
		return storage.PresignedRequest{}, fmt.Errorf("s3 presign get %s: %w", key, err)
	}
	return storage.PresignedRequest{Method: req.Method, URL: req.URL, Header: req.SignedHeader}, nil
}

// PresignPut implements storage.Presigner.
func (s *Store) PresignPut(ctx context.Context, key string, size int64, sha256sum []byte, expires time.Duration) (storage.PresignedRequest, error) {
	if len(sha256sum) != 32 {
		return storage.PresignedRequest{}, fmt.Errorf("s3 presign put %s: sha256 checksum must be 32 bytes", key)
	}
	req, err := s.presign.PresignPutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.bucket, Key: &key,
		ContentLength:  aws.Int64(size),
		ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(sha256sum)),
	}, s3.WithPresignExpires(expires))
	if err != nil {
		return storage.PresignedRequest{}, fmt.Errorf("s3 presign put %s: %w", key, err)
	}
	header := req.SignedHeader.Clone()
	header.Del("Host")
	return storage.PresignedRequest{Method: req.Method, URL: req.URL, Header: header}, nil
}

// CreateBucket creates the store's bucket; it is not an error if it exists and is ours.
func (s *Store) CreateBucket(ctx context.Context) error {
	_, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &s.bucket})
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("s3: create bucket %q: %w", s.bucket, err)
	}
	return nil
}
