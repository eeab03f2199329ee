package cache

// The gRPC backend is an REAPI v2 cache client
// (github.com/bazelbuild/remote-apis), so pipe shares results through the
// caches teams already run: bazel-remote, BuildBuddy, EngFlow, NativeLink,
// Buildbarn.
//
//	grpc://host:port     plaintext (h2c)
//	grpcs://host[:port]  TLS, the system's roots or --remote-tls-ca; port 443 by default
//
// What it sends:
//
//   - Capabilities.GetCapabilities once, before anything else: the server
//     must offer SHA256 digests; max_batch_total_size_bytes bounds batch
//     requests (4 MiB, gRPC's default message limit, when it names none or
//     more); zstd is used where supported_compressors and
//     supported_batch_update_compressors offer it; an
//     ActionCacheUpdateCapabilities.update_enabled of false stops uploads
//     with one warning. A server without the Capabilities service gets
//     those defaults.
//   - The AC through ActionCache.GetActionResult and UpdateActionResult.
//     An action key is not the digest of an Action message (a cache-only
//     client has none), but REAPI wants a digest, and a size of 0 is
//     reserved for the empty blob: keys are sent as {key, actionKeySize}.
//     The same key is what Bazel's HTTP protocol calls /ac/<key>, so a
//     server that speaks both (bazel-remote) serves one entry to both.
//   - The CAS through FindMissingBlobs (only what it names is uploaded),
//     BatchReadBlobs and BatchUpdateBlobs for blobs up to the batch limit,
//     and ByteStream Read and Write for larger ones, in chunks, never whole
//     in memory: {instance}/blobs/{hash}/{size} and
//     {instance}/uploads/{uuid}/blobs/{hash}/{size}, or their
//     compressed-blobs/zstd/ forms.
//
// Headers (--remote-header) are sent as metadata on every call, with
// credentials from the URL's user:password or PIPE_REMOTE_CACHE_USER and
// PIPE_REMOTE_CACHE_PASSWORD (as basic auth, which bazel-remote reads) or
// PIPE_REMOTE_CACHE_TOKEN (a bearer token). A RequestMetadata naming pipe
// goes with every call, as REAPI asks of clients.
//
// Unary calls that fail with UNAVAILABLE, RESOURCE_EXHAUSTED or ABORTED are
// tried again twice with a short backoff, within the caller's deadline; the
// rest of the fault handling (timeouts, the breaker, one warning) is
// Remote's. Streams are not retried: their source may not rewind.
//
// The connection, the capabilities and the CAS calls are what a remote
// execution client needs too (see docs/remote-execution.md): Execute would
// be one more client on the same connection.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	// defaultBatchLimit is gRPC's default message limit, which servers
	// that name no batch limit still enforce on what they receive.
	defaultBatchLimit = 4 << 20
	// batchOverhead is what each blob adds to a batch message beyond its
	// bytes: the digest and the framing.
	batchOverhead = 128
	// streamChunk is the data one ByteStream message carries.
	streamChunk = 256 << 10
	// maxMessage bounds what the client sends or accepts in one message:
	// an AC entry (maxACSize) or a batch, with room for framing.
	maxMessage = maxACSize + 1<<20
	// actionKeySize is the size sent with every action key (see above).
	actionKeySize = 32
	// maxDecodeWindow bounds the memory a zstd stream from the server may
	// ask for.
	maxDecodeWindow = 64 << 20
)

// NewGRPCBackend returns a Backend for the REAPI server at rawURL. It
// connects lazily: a server that is down shows on first use, as a miss and
// one warning, not here.
func NewGRPCBackend(rawURL string, ep Endpoint) (Backend, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("remote cache URL: %w", err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "grpc" && scheme != "grpcs" {
		return nil, fmt.Errorf("remote cache URL %q: want grpc://host:port or grpcs://host:port", u.Redacted())
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("remote cache URL %q: no host", u.Redacted())
	}
	if strings.Trim(u.Path, "/") != "" {
		return nil, fmt.Errorf("remote cache URL %q: a grpc(s):// URL takes no path; give an REAPI instance name with --remote-instance-name", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("remote cache URL %q: want grpc(s)://host:port, without a query or fragment", u.Redacted())
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if scheme == "grpcs" {
			port = "443"
		}
	}
	target := net.JoinHostPort(u.Hostname(), port)
	b := &grpcBackend{instance: ep.InstanceName, shown: scheme + "://" + target}
	if ep.InstanceName != "" {
		b.shown += " (instance " + ep.InstanceName + ")"
	}
	if ep.TLSRoots != nil && scheme != "grpcs" {
		return nil, fmt.Errorf("remote cache %s: --remote-tls-ca needs grpcs://, not grpc://", b.shown)
	}

	md := metadata.MD{}
	switch {
	case u.User != nil:
		pass, _ := u.User.Password()
		md.Set("authorization", basicAuth(u.User.Username(), pass))
	case os.Getenv("PIPE_REMOTE_CACHE_USER") != "":
		md.Set("authorization", basicAuth(os.Getenv("PIPE_REMOTE_CACHE_USER"), os.Getenv("PIPE_REMOTE_CACHE_PASSWORD")))
	case os.Getenv("PIPE_REMOTE_CACHE_TOKEN") != "":
		md.Set("authorization", "Bearer "+os.Getenv("PIPE_REMOTE_CACHE_TOKEN"))
	}
	for _, h := range ep.Headers {
		md.Set(h.Name, h.Value)
	}
	rm, err := proto.Marshal(&repb.RequestMetadata{ToolDetails: &repb.ToolDetails{ToolName: "pipe"}})
	if err != nil {
		return nil, err
	}
	md.Set("build.bazel.remote.execution.v2.requestmetadata-bin", string(rm))
	b.md = md

	creds := insecure.NewCredentials()
	if scheme == "grpcs" {
		creds = credentials.NewTLS(&tls.Config{RootCAs: ep.TLSRoots, MinVersion: tls.VersionTLS12})
	}
	b.conn, err = grpc.NewClient(target,
		grpc.WithTransportCredentials(creds),
		grpc.WithUserAgent("pipe"),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)),
	)
	if err != nil {
		return nil, fmt.Errorf("remote cache %s: %w", b.shown, err)
	}
	b.ac = repb.NewActionCacheClient(b.conn)
	b.cas = repb.NewContentAddressableStorageClient(b.conn)
	b.capc = repb.NewCapabilitiesClient(b.conn)
	b.bs = bytestream.NewByteStreamClient(b.conn)
	b.zenc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	b.zdec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(2*defaultBatchLimit), zstd.WithDecoderMaxWindow(maxDecodeWindow))
	if err != nil {
		return nil, err
	}
	return b, nil
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

type grpcBackend struct {
	conn     *grpc.ClientConn
	shown    string
	instance string
	md       metadata.MD
	ac       repb.ActionCacheClient
	cas      repb.ContentAddressableStorageClient
	capc     repb.CapabilitiesClient
	bs       bytestream.ByteStreamClient
	// zenc and zdec compress and decompress whole batch blobs; their
	// EncodeAll and DecodeAll are safe for concurrent use.
	zenc *zstd.Encoder
	zdec *zstd.Decoder

	mu   sync.Mutex
	caps *serverCaps // nil until GetCapabilities answered
}

// serverCaps is what pipe uses of the server's capabilities.
type serverCaps struct {
	batchLimit int64
	zstd       bool // ByteStream compressed-blobs/zstd
	zstdBatch  bool // BatchUpdateBlobs with zstd
	acUpdate   bool
	maxBlob    int64 // 0: no limit
}

func (b *grpcBackend) String() string { return b.shown }

// Close releases the connection.
func (b *grpcBackend) Close() error {
	b.zdec.Close()
	return b.conn.Close()
}

func (b *grpcBackend) ctx(ctx context.Context) context.Context {
	return metadata.NewOutgoingContext(ctx, b.md)
}

// rpcError names the call and the server; the gRPC status stays
// reachable for kindOf. (Remote adds why a deadline ended.)
func (b *grpcBackend) rpcError(_ context.Context, call string, err error) error {
	return fmt.Errorf("%s %s: %w", call, b.shown, err)
}

// refusedByServer reports a gRPC status that says the server understood
// and declined (credentials, a malformed or unsupported request): it
// works, but not for this request, so reads go on and uploads stop.
func refusedByServer(err error) bool {
	s, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch s.Code() {
	case codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument,
		codes.FailedPrecondition, codes.Unimplemented, codes.OutOfRange, codes.AlreadyExists:
		return true
	}
	return false
}

// retryUnary runs a unary call, again after a short backoff when the server
// says it is briefly unable (UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED).
func retryUnary(ctx context.Context, call func() error) error {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := call()
		switch status.Code(err) {
		case codes.Unavailable, codes.ResourceExhausted, codes.Aborted:
		default:
			return err
		}
		if attempt == 3 {
			return err
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return err
		}
		backoff *= 3
	}
}

// capabilities asks the server once; later calls reuse the answer. A
// failure is not remembered: the breaker decides whether to ask again.
func (b *grpcBackend) capabilities(ctx context.Context) (*serverCaps, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.caps != nil {
		return b.caps, nil
	}
	var resp *repb.ServerCapabilities
	err := retryUnary(ctx, func() (err error) {
		resp, err = b.capc.GetCapabilities(b.ctx(ctx), &repb.GetCapabilitiesRequest{InstanceName: b.instance})
		return err
	})
	c := &serverCaps{batchLimit: defaultBatchLimit, acUpdate: true}
	switch {
	case status.Code(err) == codes.Unimplemented:
		// A cache without the Capabilities service: REAPI's defaults.
	case err != nil:
		return nil, b.rpcError(ctx, "GetCapabilities", err)
	default:
		cc := resp.GetCacheCapabilities()
		if cc == nil {
			return nil, fmt.Errorf("remote cache %s offers no cache (its capabilities have no cache_capabilities); is it an execution-only endpoint?", b.shown)
		}
		if fns := cc.GetDigestFunctions(); len(fns) > 0 && !hasValue(fns, repb.DigestFunction_SHA256) {
			return nil, fmt.Errorf("remote cache %s does not offer SHA256 digests (it offers %v), which pipe names every blob by", b.shown, fns)
		}
		if n := cc.GetMaxBatchTotalSizeBytes(); n > 0 && n < c.batchLimit {
			c.batchLimit = n
		}
		c.zstd = hasValue(cc.GetSupportedCompressors(), repb.Compressor_ZSTD)
		c.zstdBatch = hasValue(cc.GetSupportedBatchUpdateCompressors(), repb.Compressor_ZSTD)
		if u := cc.GetActionCacheUpdateCapabilities(); u != nil {
			c.acUpdate = u.GetUpdateEnabled()
		}
		c.maxBlob = cc.GetMaxCasBlobSizeBytes()
	}
	b.caps = c
	return c, nil
}

func hasValue[T comparable](vs []T, v T) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// BatchLimit is the server's batch limit once known, else gRPC's default.
func (b *grpcBackend) BatchLimit() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.caps != nil {
		return b.caps.batchLimit - batchOverhead
	}
	return defaultBatchLimit - batchOverhead
}

func (b *grpcBackend) acDigest(key ActionKey) *repb.Digest {
	return &repb.Digest{Hash: key.String(), SizeBytes: actionKeySize}
}

func (b *grpcBackend) GetAC(ctx context.Context, key ActionKey) ([]byte, error) {
	if _, err := b.capabilities(ctx); err != nil {
		return nil, err
	}
	var ar *repb.ActionResult
	err := retryUnary(ctx, func() (err error) {
		ar, err = b.ac.GetActionResult(b.ctx(ctx), &repb.GetActionResultRequest{
			InstanceName: b.instance, ActionDigest: b.acDigest(key), DigestFunction: repb.DigestFunction_SHA256,
		})
		return err
	})
	if status.Code(err) == codes.NotFound {
		return nil, ErrMiss
	}
	if err != nil {
		return nil, b.rpcError(ctx, "GetActionResult", err)
	}
	return marshalDet(ar)
}

func (b *grpcBackend) PutAC(ctx context.Context, key ActionKey, value []byte) error {
	c, err := b.capabilities(ctx)
	if err != nil {
		return err
	}
	if !c.acUpdate {
		return b.rpcError(ctx, "UpdateActionResult", status.Error(codes.PermissionDenied, "the server's capabilities say it takes no action cache updates (update_enabled is false)"))
	}
	ar := &repb.ActionResult{}
	if err := proto.Unmarshal(value, ar); err != nil {
		return &remoteError{kindLocal, fmt.Errorf("action %s: %w", key, err)}
	}
	err = retryUnary(ctx, func() error {
		_, err := b.ac.UpdateActionResult(b.ctx(ctx), &repb.UpdateActionResultRequest{
			InstanceName: b.instance, ActionDigest: b.acDigest(key), ActionResult: ar, DigestFunction: repb.DigestFunction_SHA256,
		})
		return err
	})
	if err != nil {
		return b.rpcError(ctx, "UpdateActionResult", err)
	}
	return nil
}

func (b *grpcBackend) FindMissing(ctx context.Context, bs []SizedDigest) ([]SizedDigest, error) {
	if len(bs) == 0 {
		return nil, nil
	}
	if _, err := b.capabilities(ctx); err != nil {
		return nil, err
	}
	req := &repb.FindMissingBlobsRequest{InstanceName: b.instance, DigestFunction: repb.DigestFunction_SHA256}
	for _, d := range bs {
		req.BlobDigests = append(req.BlobDigests, toPBDigest(d.Digest, d.Size))
	}
	var resp *repb.FindMissingBlobsResponse
	err := retryUnary(ctx, func() (err error) {
		resp, err = b.cas.FindMissingBlobs(b.ctx(ctx), req)
		return err
	})
	if err != nil {
		return nil, b.rpcError(ctx, "FindMissingBlobs", err)
	}
	out := make([]SizedDigest, 0, len(resp.MissingBlobDigests))
	for _, m := range resp.MissingBlobDigests {
		d, size, err := fromPBDigest(m)
		if err != nil {
			return nil, &remoteError{kindInvalid, fmt.Errorf("FindMissingBlobs %s: %w", b.shown, err)}
		}
		out = append(out, SizedDigest{d, size})
	}
	return out, nil
}

// resource names a blob for ByteStream: {instance}/blobs/{hash}/{size},
// with uploads/{uuid}/ before blobs for a write, and
// compressed-blobs/zstd/ instead of blobs/ when compressed.
func (b *grpcBackend) resource(blob SizedDigest, upload, compressed bool) string {
	var s strings.Builder
	if b.instance != "" {
		s.WriteString(b.instance + "/")
	}
	if upload {
		s.WriteString("uploads/" + newUUID() + "/")
	}
	if compressed {
		s.WriteString("compressed-blobs/zstd/")
	} else {
		s.WriteString("blobs/")
	}
	fmt.Fprintf(&s, "%s/%d", blob.Digest, blob.Size)
	return s.String()
}

// newUUID returns a random (version 4) UUID, which ByteStream upload names
// carry so concurrent uploads of one blob do not collide.
func newUUID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// GetCAS streams blob b from ByteStream Read into w, decompressing as it
// goes when the server offers zstd.
func (b *grpcBackend) GetCAS(ctx context.Context, blob SizedDigest, w io.Writer) (int64, error) {
	if blob.Size == 0 {
		return 0, nil
	}
	c, err := b.capabilities(ctx)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := b.bs.Read(b.ctx(ctx), &bytestream.ReadRequest{ResourceName: b.resource(blob, false, c.zstd)})
	if err != nil {
		return 0, b.rpcError(ctx, "ByteStream.Read", err)
	}
	recv := func(deliver func([]byte) error) error {
		for {
			msg, err := stream.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := deliver(msg.Data); err != nil {
				return err
			}
		}
	}
	var n int64
	if !c.zstd {
		err = recv(func(p []byte) error {
			k, err := w.Write(p)
			n += int64(k)
			return err
		})
	} else {
		n, err = b.decodeStream(recv, w, cancel)
	}
	if status.Code(err) == codes.NotFound {
		return n, ErrMiss
	}
	if err != nil {
		var re *remoteError
		if errors.As(err, &re) {
			return n, err
		}
		return n, b.rpcError(ctx, "ByteStream.Read", err)
	}
	return n, nil
}

// decodeStream feeds what recv delivers through a zstd decoder into w.
// stop cancels the stream, for when decoding ends first.
func (b *grpcBackend) decodeStream(recv func(deliver func([]byte) error) error, w io.Writer, stop func()) (int64, error) {
	pr, pw := io.Pipe()
	recvErr := make(chan error, 1)
	go func() {
		err := recv(func(p []byte) error {
			_, err := pw.Write(p)
			return err
		})
		pw.CloseWithError(err)
		recvErr <- err
	}()
	dec, err := zstd.NewReader(pr, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxDecodeWindow))
	if err != nil {
		stop()
		pr.CloseWithError(err)
		<-recvErr
		return 0, err
	}
	n, err := io.Copy(w, dec)
	dec.Close()
	if err != nil {
		// A receiver waiting for more must not wait for the stall timer.
		stop()
	}
	// Stops a receiver that still has data to hand over.
	pr.CloseWithError(errStopped)
	rerr := <-recvErr
	var re *remoteError
	switch {
	case err != nil && errors.As(err, &re):
		// w refused the data (too long, or the local disk failed).
		return n, err
	case rerr != nil && !errors.Is(rerr, errStopped):
		// The stream's own error says more than the decoder's.
		return n, rerr
	case err != nil:
		return n, &remoteError{kindCorrupt, fmt.Errorf("decompress zstd from %s: %w", b.shown, err)}
	}
	return n, nil
}

var errStopped = errors.New("stopped reading")

// errStored ends an upload the server cut short: it already has the blob.
var errStored = errors.New("the server already holds the blob")

// chunkSender is the io.Writer end of a ByteStream Write: it sends what it
// is given in messages of streamChunk bytes.
type chunkSender struct {
	stream   bytestream.ByteStream_WriteClient
	resource string
	buf      []byte
	off      int64 // bytes sent so far, which is the next write_offset
	sent     bool  // the resource name went out with the first message
	early    bool  // the server ended the stream before we finished
}

func (c *chunkSender) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if c.buf == nil {
			c.buf = make([]byte, 0, streamChunk)
		}
		k := min(len(p), cap(c.buf)-len(c.buf))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
		if len(c.buf) == cap(c.buf) {
			if err := c.flush(false); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// flush sends what is buffered; finish marks the last message.
func (c *chunkSender) flush(finish bool) error {
	req := &bytestream.WriteRequest{WriteOffset: c.off, Data: c.buf, FinishWrite: finish}
	if !c.sent {
		req.ResourceName = c.resource
	}
	err := c.stream.Send(req)
	if err == io.EOF {
		// The server closed the stream; CloseAndRecv says why.
		c.early = true
		return errStored
	}
	if err != nil {
		return err
	}
	c.sent = true
	c.off += int64(len(c.buf))
	// gRPC may still hold the message it was given; the next chunk gets
	// a buffer of its own.
	c.buf = nil
	return nil
}

// PutCAS streams blob b through ByteStream Write, compressed with zstd when
// the server offers it. A server that already holds the blob may end the
// stream early; that is success.
func (b *grpcBackend) PutCAS(ctx context.Context, blob SizedDigest, r io.Reader) error {
	if blob.Size == 0 {
		return nil
	}
	c, err := b.capabilities(ctx)
	if err != nil {
		return err
	}
	if c.maxBlob > 0 && blob.Size > c.maxBlob {
		return b.rpcError(ctx, "ByteStream.Write", status.Errorf(codes.OutOfRange, "blob %s is larger than the server's limit of %d bytes", blob, c.maxBlob))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := b.bs.Write(b.ctx(ctx))
	if err != nil {
		return b.rpcError(ctx, "ByteStream.Write", err)
	}
	cs := &chunkSender{stream: stream, resource: b.resource(blob, true, c.zstd)}
	var copied int64
	if c.zstd {
		enc, err := zstd.NewWriter(cs, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return err
		}
		copied, err = io.CopyN(enc, r, blob.Size)
		if err == nil {
			err = enc.Close()
		} else {
			enc.Close()
		}
		if err == nil {
			err = cs.flush(true)
		}
		if err != nil && !errors.Is(err, errStored) {
			return b.sendError(ctx, stream, copied, blob, err)
		}
	} else {
		copied, err = io.CopyN(cs, r, blob.Size)
		if err == nil {
			err = cs.flush(true)
		}
		if err != nil && !errors.Is(err, errStored) {
			return b.sendError(ctx, stream, copied, blob, err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return b.rpcError(ctx, "ByteStream.Write", err)
	}
	if cs.early {
		if resp.CommittedSize != blob.Size && resp.CommittedSize != -1 {
			return b.rpcError(ctx, "ByteStream.Write", status.Errorf(codes.DataLoss, "server ended the upload of %s after committing %d bytes", blob, resp.CommittedSize))
		}
		return nil
	}
	if !c.zstd && resp.CommittedSize != blob.Size {
		return b.rpcError(ctx, "ByteStream.Write", status.Errorf(codes.DataLoss, "server committed %d of the %d bytes of %s", resp.CommittedSize, blob.Size, blob.Digest))
	}
	return nil
}

// sendError reports an upload that could not be sent: the local source
// came up short, or the stream broke (then the server's status says why).
func (b *grpcBackend) sendError(ctx context.Context, stream bytestream.ByteStream_WriteClient, copied int64, blob SizedDigest, err error) error {
	if errors.Is(err, io.EOF) {
		return &remoteError{kindLocal, fmt.Errorf("blob %s: the local copy has %d bytes, not %d", blob.Digest, copied, blob.Size)}
	}
	var re *remoteError
	if errors.As(err, &re) {
		return err
	}
	if _, serr := stream.CloseAndRecv(); serr != nil {
		err = serr
	}
	return b.rpcError(ctx, "ByteStream.Write", err)
}

// GetCASBatch reads blobs with BatchReadBlobs, as few requests as the
// batch limit allows; a blob too big for a batch of its own is streamed.
func (b *grpcBackend) GetCASBatch(ctx context.Context, bs []SizedDigest, got func(SizedDigest, []byte) error) error {
	c, err := b.capabilities(ctx)
	if err != nil {
		return err
	}
	missing := 0
	for _, group := range splitBatch(bs, c.batchLimit, func(d SizedDigest) int64 { return d.Size }) {
		if len(group) == 1 && group[0].Size+batchOverhead > c.batchLimit {
			var buf bytes.Buffer
			if _, err := b.GetCAS(ctx, group[0], &buf); err != nil {
				return err
			}
			if err := got(group[0], buf.Bytes()); err != nil {
				return err
			}
			continue
		}
		req := &repb.BatchReadBlobsRequest{InstanceName: b.instance, DigestFunction: repb.DigestFunction_SHA256}
		if c.zstd {
			req.AcceptableCompressors = []repb.Compressor_Value{repb.Compressor_ZSTD}
		}
		for _, d := range group {
			req.Digests = append(req.Digests, toPBDigest(d.Digest, d.Size))
		}
		var resp *repb.BatchReadBlobsResponse
		err := retryUnary(ctx, func() (err error) {
			resp, err = b.cas.BatchReadBlobs(b.ctx(ctx), req)
			return err
		})
		if err != nil {
			return b.rpcError(ctx, "BatchReadBlobs", err)
		}
		for _, r := range resp.Responses {
			d, size, err := fromPBDigest(r.Digest)
			if err != nil {
				return &remoteError{kindInvalid, fmt.Errorf("BatchReadBlobs %s: %w", b.shown, err)}
			}
			switch code := codes.Code(r.GetStatus().GetCode()); code {
			case codes.OK:
			case codes.NotFound:
				missing++
				continue
			default:
				return b.rpcError(ctx, "BatchReadBlobs", status.ErrorProto(r.Status))
			}
			data := r.Data
			switch r.Compressor {
			case repb.Compressor_IDENTITY:
			case repb.Compressor_ZSTD:
				if data, err = b.zdec.DecodeAll(r.Data, make([]byte, 0, size)); err != nil {
					return &remoteError{kindCorrupt, fmt.Errorf("blob %s from %s: decompress zstd: %w", d, b.shown, err)}
				}
			default:
				return &remoteError{kindInvalid, fmt.Errorf("blob %s from %s: compressor %s, which pipe did not accept", d, b.shown, r.Compressor)}
			}
			if err := got(SizedDigest{d, size}, data); err != nil {
				return err
			}
		}
	}
	if missing > 0 {
		return ErrMiss
	}
	return nil
}

// PutCASBatch stores blobs with BatchUpdateBlobs, each compressed when the
// server takes zstd in batches and that makes it smaller.
func (b *grpcBackend) PutCASBatch(ctx context.Context, blobs []BlobData) error {
	c, err := b.capabilities(ctx)
	if err != nil {
		return err
	}
	reqs := make([]*repb.BatchUpdateBlobsRequest_Request, 0, len(blobs))
	for _, blob := range blobs {
		r := &repb.BatchUpdateBlobsRequest_Request{Digest: toPBDigest(blob.Digest, blob.Size), Data: blob.Data}
		if c.zstdBatch {
			if z := b.zenc.EncodeAll(blob.Data, nil); len(z) < len(blob.Data) {
				r.Data, r.Compressor = z, repb.Compressor_ZSTD
			}
		}
		reqs = append(reqs, r)
	}
	for _, group := range splitBatch(reqs, c.batchLimit, func(r *repb.BatchUpdateBlobsRequest_Request) int64 { return int64(len(r.Data)) }) {
		if len(group) == 1 && int64(len(group[0].Data))+batchOverhead > c.batchLimit {
			d, size, _ := fromPBDigest(group[0].Digest)
			var src []byte
			for _, blob := range blobs {
				if blob.Digest == d {
					src = blob.Data
				}
			}
			if err := b.PutCAS(ctx, SizedDigest{d, size}, bytes.NewReader(src)); err != nil {
				return err
			}
			continue
		}
		req := &repb.BatchUpdateBlobsRequest{InstanceName: b.instance, Requests: group, DigestFunction: repb.DigestFunction_SHA256}
		var resp *repb.BatchUpdateBlobsResponse
		err := retryUnary(ctx, func() (err error) {
			resp, err = b.cas.BatchUpdateBlobs(b.ctx(ctx), req)
			return err
		})
		if err != nil {
			return b.rpcError(ctx, "BatchUpdateBlobs", err)
		}
		for _, r := range resp.Responses {
			if code := codes.Code(r.GetStatus().GetCode()); code != codes.OK {
				return b.rpcError(ctx, "BatchUpdateBlobs", status.ErrorProto(r.Status))
			}
		}
	}
	return nil
}

// splitBatch groups items into requests whose sizes, with batchOverhead
// each, fit limit; an item too big alone gets a group of its own.
func splitBatch[T any](items []T, limit int64, size func(T) int64) [][]T {
	var out [][]T
	var cur []T
	var n int64
	for _, it := range items {
		s := size(it) + batchOverhead
		if len(cur) > 0 && n+s > limit {
			out = append(out, cur)
			cur, n = nil, 0
		}
		cur = append(cur, it)
		n += s
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}
