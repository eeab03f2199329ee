package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/testenv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func eachS3(t *testing.T, f func(t *testing.T, s *testenv.S3Server)) {
	for _, name := range []string{"minio", "moto"} {
		t.Run(name, func(t *testing.T) { f(t, testenv.SharedS3(t, name)) })
	}
}

func TestS3BackendProtocol(t *testing.T) {
	eachS3(t, func(t *testing.T, s *testenv.S3Server) {
		ctx := context.Background()
		bucket := s.NewBucket(t)
		b := s3backend(t, s, bucket, "/team/cache/", "")
		key := ActionKey(Sum([]byte("key")))
		if _, err := b.GetAC(ctx, key); !errors.Is(err, ErrMiss) {
			t.Fatalf("GetAC of absent key: %v", err)
		}
		if err := b.PutAC(ctx, key, []byte("value")); err != nil {
			t.Fatal(err)
		}
		if v, err := b.GetAC(ctx, key); err != nil || string(v) != "value" {
			t.Fatalf("GetAC = %q, %v", v, err)
		}
		blob := []byte("blob contents")
		d := Sum(blob)
		if has, err := hasBlob(ctx, b, SizedDigest{d, int64(len(blob))}); err != nil || has {
			t.Fatalf("HasCAS of absent blob = %v, %v", has, err)
		}
		var buf bytes.Buffer
		if _, err := b.GetCAS(ctx, SizedDigest{d, int64(len(blob))}, &buf); !errors.Is(err, ErrMiss) {
			t.Fatalf("GetCAS of absent blob: %v", err)
		}
		if err := b.PutCAS(ctx, SizedDigest{d, int64(len(blob))}, bytes.NewReader(blob)); err != nil {
			t.Fatal(err)
		}
		if has, err := hasBlob(ctx, b, SizedDigest{d, int64(len(blob))}); err != nil || !has {
			t.Fatalf("HasCAS = %v, %v", has, err)
		}
		if n, err := b.GetCAS(ctx, SizedDigest{d, int64(len(blob))}, &buf); err != nil || n != int64(len(blob)) || buf.String() != string(blob) {
			t.Fatalf("GetCAS = %d %q, %v", n, buf.String(), err)
		}
		// The object layout is the HTTP protocol's, under the prefix.
		out, err := b.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, o := range out.Contents {
			keys = append(keys, *o.Key)
		}
		want := []string{"team/cache/ac/" + key.String(), "team/cache/cas/" + d.String()}
		if strings.Join(keys, " ") != strings.Join(want, " ") {
			t.Errorf("objects %v, want %v", keys, want)
		}
		if s.Name == "moto" {
			return // moto does not check x-amz-checksum-sha256; S3 and MinIO do
		}
		// The server checks the sha256 the key names: bytes that do not
		// match are refused, so even a buggy uploader cannot poison a key.
		other := Sum([]byte("other"))
		if err := b.PutCAS(ctx, SizedDigest{other, int64(len(blob))}, bytes.NewReader(blob)); err == nil {
			t.Error("blob stored under a digest it does not match")
		}
		// Also when the body is a plain stream, sent unsigned.
		if err := b.PutCAS(ctx, SizedDigest{other, int64(len(blob))}, io.MultiReader(bytes.NewReader(blob))); err == nil {
			t.Error("streamed blob stored under a digest it does not match")
		}
		if has, _ := hasBlob(ctx, b, SizedDigest{other, int64(len(blob))}); has {
			t.Error("mismatched blob present")
		}
	})
}

// TestS3BackendFromEnvironment checks the public constructor the CLI uses:
// endpoint, credentials and region come from the standard AWS variables,
// and path-style addressing is switched on for a custom endpoint.
func TestS3BackendFromEnvironment(t *testing.T) {
	s := testenv.SharedS3(t, "minio")
	bucket := s.NewBucket(t)
	for _, endpointVar := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
		t.Run(endpointVar, func(t *testing.T) {
			for _, k := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"} {
				t.Setenv(k, "")
			}
			t.Setenv(endpointVar, s.Endpoint)
			t.Setenv("AWS_ACCESS_KEY_ID", s.User)
			t.Setenv("AWS_SECRET_ACCESS_KEY", s.Pass)
			t.Setenv("AWS_REGION", "us-east-1")
			t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
			t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
			ctx := context.Background()
			b, err := NewS3Backend(ctx, "s3://"+bucket+"/"+endpointVar)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), s.Endpoint) {
				t.Errorf("String() = %q does not name the endpoint", b.String())
			}
			blob := []byte(endpointVar)
			if err := b.PutCAS(ctx, SizedDigest{Sum(blob), int64(len(blob))}, bytes.NewReader(blob)); err != nil {
				t.Fatal(err)
			}
			if has, err := hasBlob(ctx, b, SizedDigest{Sum(blob), int64(len(blob))}); err != nil || !has {
				t.Fatalf("HasCAS = %v, %v", has, err)
			}
		})
	}
}
