package cache

// The S3 backend stores the HTTP protocol's keys as objects:
//
//	s3://bucket/prefix → <prefix>/ac/<action key hex>, <prefix>/cas/<sha256 hex>
//
// It uses aws-sdk-go-v2's default configuration: credentials from the
// standard chain (environment, shared files, SSO, IMDS…), the region from
// AWS_REGION or the profile (us-east-1 when neither names one), and the
// endpoint from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL. Whenever an
// endpoint is set, requests use path-style addressing, which S3-compatible
// stores such as MinIO need (their buckets are not DNS names).
//
// Readers need s3:GetObject and s3:ListBucket (without ListBucket, S3
// answers 403 instead of 404 for a missing object, which pipe must treat as
// an error); writers also need s3:PutObject.

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
)

type s3Backend struct {
	client *s3.Client
	bucket string
	prefix string // "" or "dir/sub/", always ending in a slash
	shown  string
}

// NewS3Backend returns a Backend storing objects under s3://bucket/prefix.
func NewS3Backend(ctx context.Context, rawURL string) (Backend, error) {
	return newS3Backend(ctx, rawURL)
}

// newS3Backend lets tests hand configuration in explicitly instead of
// through process-wide environment variables.
func newS3Backend(ctx context.Context, rawURL string, opts ...func(*config.LoadOptions) error) (*s3Backend, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("remote cache URL: %w", err)
	}
	if u.Scheme != "s3" {
		return nil, fmt.Errorf("remote cache URL %q: want s3://bucket/prefix", rawURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("remote cache URL %q: no bucket (want s3://bucket/prefix)", rawURL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("remote cache URL %q: want s3://bucket/prefix; credentials come from the AWS credential chain", u.Redacted())
	}
	b := &s3Backend{bucket: u.Host}
	if p := strings.Trim(u.Path, "/"); p != "" {
		b.prefix = p + "/"
	}
	b.shown = "s3://" + b.bucket + "/" + strings.TrimSuffix(b.prefix, "/")
	// The SDK's own retries stay, but with short backoff: Remote's
	// per-operation deadline is what bounds a slow store, and a cache
	// that needs long backoff is better skipped for this build.
	base := []func(*config.LoadOptions) error{
		// The SDK would print its own warnings (such as the fallback to
		// IMDSv1 while it looks for credentials) in the middle of the
		// build's output; what matters reaches the user as one pipe
		// warning through Remote.
		config.WithLogger(logging.Nop{}),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 3
				o.MaxBackoff = time.Second
			})
		}),
	}
	cfg, err := config.LoadDefaultConfig(ctx, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("remote cache %s: load AWS configuration: %w", b.shown, err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Credentials != nil {
		cfg.Credentials = &credentialsOnce{provider: cfg.Credentials}
	}
	b.client = s3.NewFromConfig(cfg, func(o *s3.Options) {
		// Remote verifies every download against its sha256 as it
		// streams; the SDK's own response checksum would hash twice and
		// report a corrupt body as an opaque SDK error instead.
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		if o.BaseEndpoint != nil {
			o.UsePathStyle = true
			b.shown += " (endpoint " + *o.BaseEndpoint + ")"
		}
	})
	return b, nil
}

func (b *s3Backend) String() string { return b.shown }

// CredentialsError says the AWS credential chain found no credentials for
// the S3 remote cache. Remote reports it once and goes on without the
// cache.
type CredentialsError struct{ Err error }

func (e *CredentialsError) Error() string {
	return "no AWS credentials (the credential chain looked at " + credentialChain() + "; the SDK said: " + e.Err.Error() + ")"
}

func (e *CredentialsError) Unwrap() error { return e.Err }

// credentialChain names where the SDK's default chain looks, in order.
func credentialChain() string {
	profile := os.Getenv("AWS_PROFILE")
	if profile == "" {
		profile = "default"
	}
	return "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, " +
		"profile " + profile + " in ~/.aws/config and ~/.aws/credentials (with SSO or credential_process), " +
		"a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE), " +
		"ECS container credentials, " +
		"EC2 instance metadata"
}

// credentialsOnce asks the credential chain until it fails once, then
// keeps the failure: each attempt walks the whole chain down to the EC2
// instance metadata service, which off EC2 costs a timeout per request.
type credentialsOnce struct {
	provider aws.CredentialsProvider
	mu       sync.Mutex
	err      error
}

func (c *credentialsOnce) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return aws.Credentials{}, err
	}
	creds, err := c.provider.Retrieve(ctx)
	if err != nil && ctx.Err() == nil {
		c.mu.Lock()
		c.err = &CredentialsError{Err: err}
		err = c.err
		c.mu.Unlock()
	}
	return creds, err
}

func (b *s3Backend) key(e entry) string {
	return b.prefix + e.String()
}

// opError names the object in an error. When ctx ended, its cause (say,
// "no answer within 5s") replaces the SDK's long retry-and-cancel chain.
func (b *s3Backend) opError(ctx context.Context, op, key string, err error) error {
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	return fmt.Errorf("%s s3://%s/%s: %w", op, b.bucket, key, err)
}

// isNotFound recognizes the several ways S3 and its imitations say 404.
func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) && (api.ErrorCode() == "NoSuchKey" || api.ErrorCode() == "NotFound") {
		return true
	}
	var sc interface{ HTTPStatusCode() int }
	return errors.As(err, &sc) && sc.HTTPStatusCode() == http.StatusNotFound
}

func (b *s3Backend) get(ctx context.Context, e entry, w io.Writer, limit int64) (int64, error) {
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &b.bucket, Key: aws.String(b.key(e))})
	if err != nil {
		if isNotFound(err) {
			return 0, ErrMiss
		}
		return 0, b.opError(ctx, "get", b.key(e), err)
	}
	defer out.Body.Close()
	var r io.Reader = out.Body
	if limit > 0 {
		r = io.LimitReader(r, limit+1)
	}
	n, err := io.Copy(w, r)
	if err != nil {
		return n, b.opError(ctx, "get", b.key(e), err)
	}
	if limit > 0 && n > limit {
		return n, fmt.Errorf("get s3://%s/%s: entry larger than %d bytes", b.bucket, b.key(e), limit)
	}
	return n, nil
}

func (b *s3Backend) put(ctx context.Context, e entry, size int64, r io.Reader, checksum []byte) error {
	in := &s3.PutObjectInput{
		Bucket:        &b.bucket,
		Key:           aws.String(b.key(e)),
		Body:          r,
		ContentLength: aws.Int64(size),
	}
	var optFns []func(*s3.Options)
	if checksum != nil {
		// The server recomputes the sha256 and refuses a body that
		// differs, so a blob corrupted on the way never lands.
		in.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(checksum))
	}
	if _, seekable := r.(io.Seeker); !seekable {
		// SigV4 would otherwise read the whole body to hash it before
		// sending; the payload is still checked by ChecksumSHA256.
		optFns = append(optFns, s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
	}
	if _, err := b.client.PutObject(ctx, in, optFns...); err != nil {
		return b.opError(ctx, "put", b.key(e), err)
	}
	return nil
}

func (b *s3Backend) GetAC(ctx context.Context, key ActionKey) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := b.get(ctx, acEntry(key), &buf, maxACSize); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (b *s3Backend) PutAC(ctx context.Context, key ActionKey, value []byte) error {
	sum := Sum(value)
	return b.put(ctx, acEntry(key), int64(len(value)), bytes.NewReader(value), sum[:])
}

func (b *s3Backend) GetCAS(ctx context.Context, blob SizedDigest, w io.Writer) (int64, error) {
	return b.get(ctx, casEntry(blob.Digest), w, 0)
}

func (b *s3Backend) PutCAS(ctx context.Context, blob SizedDigest, r io.Reader) error {
	return b.put(ctx, casEntry(blob.Digest), blob.Size, r, blob.Digest[:])
}

// FindMissing asks with a HEAD per blob; S3 has nothing better.
func (b *s3Backend) FindMissing(ctx context.Context, bs []SizedDigest) ([]SizedDigest, error) {
	return findMissingEach(ctx, bs, b.has)
}

func (b *s3Backend) has(ctx context.Context, blob SizedDigest) (bool, error) {
	key := b.key(casEntry(blob.Digest))
	_, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.bucket, Key: aws.String(key)})
	if err == nil {
		return true, nil
	}
	if isNotFound(err) {
		return false, nil
	}
	return false, b.opError(ctx, "head", key, err)
}
