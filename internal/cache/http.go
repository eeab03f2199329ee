package cache

// The HTTP backend speaks Bazel's HTTP caching protocol
// (https://bazel.build/remote/caching#http-caching):
//
//	GET/PUT/HEAD <base>/ac/<action key hex>   AC entry (REAPI ActionResult)
//	GET/PUT/HEAD <base>/cas/<sha256 hex>      CAS blob
//
// 200 is a hit, 404 a miss; a PUT may answer 200, 201 or 204. nginx with
// WebDAV PUT, bazel-remote and most Bazel cache services serve it.
//
// Credentials, first found wins:
//   - user:password in the URL (https://user:pass@host/prefix);
//   - PIPE_REMOTE_CACHE_USER and PIPE_REMOTE_CACHE_PASSWORD (basic auth);
//   - PIPE_REMOTE_CACHE_TOKEN (Authorization: Bearer <token>).
//
// Endpoint headers (--remote-header) go with every request, after the
// credentials, so an explicit Authorization header wins. Endpoint TLS roots
// (--remote-tls-ca) replace the system's for https://.
//
// The environment keeps secrets out of WORKSPACE files and shell history;
// String() never shows a password or token.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

type httpBackend struct {
	base    string // no trailing slash, no userinfo
	shown   string // base with the password redacted
	client  *http.Client
	user    string
	pass    string
	basic   bool
	token   string
	headers []Header
}

// NewHTTPBackend returns a Backend for Bazel's HTTP cache protocol at base.
// A nil client gets one with bounded dial time and pooled connections;
// per-operation deadlines come from the caller's context.
func NewHTTPBackend(base string, client *http.Client) (Backend, error) {
	return newHTTPBackend(base, client, Endpoint{})
}

func newHTTPBackend(base string, client *http.Client, ep Endpoint) (Backend, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("remote cache URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("remote cache URL %q: want http:// or https://", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("remote cache URL %q: no host", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("remote cache URL %q: a query or fragment cannot be part of a cache prefix", u.Redacted())
	}
	b := &httpBackend{client: client, headers: ep.Headers}
	if u.User != nil {
		b.user = u.User.Username()
		b.pass, _ = u.User.Password()
		b.basic = true
	} else if user := os.Getenv("PIPE_REMOTE_CACHE_USER"); user != "" {
		b.user, b.pass, b.basic = user, os.Getenv("PIPE_REMOTE_CACHE_PASSWORD"), true
	} else if tok := os.Getenv("PIPE_REMOTE_CACHE_TOKEN"); tok != "" {
		b.token = tok
	}
	b.shown = u.Redacted()
	u.User = nil
	b.base = strings.TrimRight(u.String(), "/")
	b.shown = strings.TrimRight(b.shown, "/")
	if b.client == nil {
		b.client = defaultHTTPClient(ep.TLSRoots)
	}
	return b, nil
}

func defaultHTTPClient(roots *x509.CertPool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if roots != nil {
		t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	// A dead host should cost a few seconds, not the OS's minutes-long
	// connect timeout; per-operation contexts bound the rest.
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.MaxIdleConnsPerHost = 64
	// Compressed transfer would make the byte counts lie and blobs are
	// usually compressed already.
	t.DisableCompression = true
	return &http.Client{Transport: t}
}

func (b *httpBackend) String() string { return b.shown }

// HTTPStatusError is an unexpected HTTP status from the cache server.
type HTTPStatusError struct {
	Method, URL string
	Code        int
	Status      string
	Body        string // first bytes of the response, for the message
}

func (e *HTTPStatusError) Error() string {
	msg := fmt.Sprintf("%s %s: %s", e.Method, e.URL, e.Status)
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// HTTPStatusCode matches smithy-go's response errors, so Remote classifies
// both backends' status errors alike.
func (e *HTTPStatusError) HTTPStatusCode() int { return e.Code }

func (b *httpBackend) do(ctx context.Context, method string, e entry, body io.Reader, size int64) (*http.Response, error) {
	path := "/" + e.String()
	req, err := http.NewRequestWithContext(ctx, method, b.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s%s: %w", method, b.shown, path, err)
	}
	if body != nil {
		req.ContentLength = size
		if size == 0 {
			// Go sends no Content-Length for a zero-length body unless
			// told it is empty, and WebDAV servers want one.
			req.Body = http.NoBody
		}
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	if b.basic {
		req.SetBasicAuth(b.user, b.pass)
	} else if b.token != "" {
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
	for _, h := range b.headers {
		req.Header.Set(h.Name, h.Value)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		// url.Error repeats the full URL; keep ours, which is redacted.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if ctx.Err() != nil {
			// "no answer within 5s" says more than "context canceled".
			err = context.Cause(ctx)
		}
		return nil, fmt.Errorf("%s %s%s: %w", method, b.shown, path, err)
	}
	return resp, nil
}

func (b *httpBackend) statusError(resp *http.Response, e entry) error {
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	body := strings.Join(strings.Fields(string(snippet)), " ")
	if strings.HasPrefix(body, "<") {
		// An HTML error page repeats the status line.
		body = ""
	}
	return &HTTPStatusError{
		Method: resp.Request.Method,
		URL:    b.shown + "/" + e.String(),
		Code:   resp.StatusCode,
		Status: resp.Status,
		Body:   body,
	}
}

// done drains a little of the body so the connection can be reused.
func done(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// maxACSize bounds what an AC GET may return: an ActionResult is small,
// and a hostile server must not make us buffer gigabytes.
const maxACSize = 64 << 20

func (b *httpBackend) GetAC(ctx context.Context, key ActionKey) ([]byte, error) {
	resp, err := b.do(ctx, http.MethodGet, acEntry(key), nil, 0)
	if err != nil {
		return nil, err
	}
	defer done(resp)
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, ErrMiss
	default:
		return nil, b.statusError(resp, acEntry(key))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxACSize+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s/ac/%s: %w", b.shown, key, err)
	}
	if len(data) > maxACSize {
		return nil, fmt.Errorf("GET %s/ac/%s: entry larger than %d bytes", b.shown, key, maxACSize)
	}
	return data, nil
}

func (b *httpBackend) put(ctx context.Context, e entry, size int64, r io.Reader) error {
	resp, err := b.do(ctx, http.MethodPut, e, r, size)
	if err != nil {
		return err
	}
	defer done(resp)
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated, http.StatusNoContent:
		return nil
	}
	return b.statusError(resp, e)
}

func (b *httpBackend) PutAC(ctx context.Context, key ActionKey, value []byte) error {
	return b.put(ctx, acEntry(key), int64(len(value)), bytes.NewReader(value))
}

func (b *httpBackend) GetCAS(ctx context.Context, blob SizedDigest, w io.Writer) (int64, error) {
	e := casEntry(blob.Digest)
	resp, err := b.do(ctx, http.MethodGet, e, nil, 0)
	if err != nil {
		return 0, err
	}
	defer done(resp)
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return 0, ErrMiss
	default:
		return 0, b.statusError(resp, e)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("GET %s/%s: %w", b.shown, e, err)
	}
	return n, nil
}

func (b *httpBackend) PutCAS(ctx context.Context, blob SizedDigest, r io.Reader) error {
	return b.put(ctx, casEntry(blob.Digest), blob.Size, r)
}

// FindMissing asks with a HEAD per blob; the protocol has nothing better.
func (b *httpBackend) FindMissing(ctx context.Context, bs []SizedDigest) ([]SizedDigest, error) {
	return findMissingEach(ctx, bs, b.has)
}

func (b *httpBackend) has(ctx context.Context, blob SizedDigest) (bool, error) {
	e := casEntry(blob.Digest)
	resp, err := b.do(ctx, http.MethodHead, e, nil, 0)
	if err != nil {
		return false, err
	}
	defer done(resp)
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, b.statusError(resp, e)
}

// headParallel bounds the HEAD requests of one FindMissing.
const headParallel = 16

// findMissingEach answers FindMissing for stores that can only be asked
// about one blob at a time, several at once. The first error ends it.
func findMissingEach(ctx context.Context, bs []SizedDigest, has func(context.Context, SizedDigest) (bool, error)) ([]SizedDigest, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu      sync.Mutex
		missing []SizedDigest
		first   error
		wg      sync.WaitGroup
		sem     = make(chan struct{}, headParallel)
	)
	for _, blob := range bs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ok, err := has(ctx, blob)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && first == nil:
				first = err
				cancel()
			case err == nil && !ok:
				missing = append(missing, blob)
			}
		}()
	}
	wg.Wait()
	return missing, first
}
