package testenv

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// GRPCFault is what a GRPCProxy does to the calls whose full method name
// contains Method (every call when Method is empty).
type GRPCFault struct {
	Method string
	// Code, when not OK, answers the call with that status instead of
	// forwarding it: UNAVAILABLE, RESOURCE_EXHAUSTED…
	Code codes.Code
	// Times limits Code to that many calls; zero means every call.
	Times int
	// Stall holds the call, unanswered, until the client gives up.
	Stall bool
	// StallAfter forwards that many response messages of a call, then
	// holds it: a download that stops midway.
	StallAfter int
	// KillAfter lets that many calls through, then kills the proxy as a
	// crash would, mid-build.
	KillAfter int
	// Delay holds each call that long before forwarding it: a server
	// that answers, slowly.
	Delay time.Duration
}

// GRPCProxy is a TEST DOUBLE: a transparent loopback gRPC proxy in front of
// a real server (bazel-remote) that counts calls and injects the failures a
// remote cache meets: status codes, stalls, a crash. It forwards every
// method as raw frames, so it needs no knowledge of the protocol.
type GRPCProxy struct {
	Addr string

	srv      *grpc.Server
	upstream *grpc.ClientConn

	mu    sync.Mutex
	fault GRPCFault
	hits  int // calls the fault applied to
	total int
	calls map[string]int
	dead  bool

	up, down atomic.Int64 // message bytes forwarded each way
}

// NewGRPCProxy starts a proxy to the plaintext gRPC server at upstream
// (host:port), stopped when the test ends.
func NewGRPCProxy(t testing.TB, upstream string) *GRPCProxy {
	t.Helper()
	up, err := grpc.NewClient(upstream, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &GRPCProxy{Addr: l.Addr().String(), upstream: up, calls: map[string]int{}}
	p.srv = grpc.NewServer(grpc.UnknownServiceHandler(p.handle), grpc.ForceServerCodec(rawCodec{}),
		grpc.MaxRecvMsgSize(128<<20), grpc.MaxSendMsgSize(128<<20))
	go p.srv.Serve(l)
	t.Cleanup(func() {
		p.Kill()
		up.Close()
	})
	return p
}

// Set replaces the fault; the zero GRPCFault forwards everything.
func (p *GRPCProxy) Set(f GRPCFault) {
	p.mu.Lock()
	p.fault, p.hits = f, 0
	p.mu.Unlock()
}

// Calls counts the calls whose full method name contains method.
func (p *GRPCProxy) Calls(method string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for m, c := range p.calls {
		if strings.Contains(m, method) {
			n += c
		}
	}
	return n
}

// Bytes returns the message bytes forwarded to the server and back.
func (p *GRPCProxy) Bytes() (up, down int64) { return p.up.Load(), p.down.Load() }

// Kill makes the proxy die like a crashed server: open connections are cut
// and the port refuses new ones.
func (p *GRPCProxy) Kill() {
	p.mu.Lock()
	dead := p.dead
	p.dead = true
	p.mu.Unlock()
	if !dead {
		p.srv.Stop()
	}
}

// rawFrame is one gRPC message, passed through undecoded.
type rawFrame struct{ b []byte }

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.(*rawFrame).b, nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	v.(*rawFrame).b = append([]byte(nil), data...)
	return nil
}

// Name is proto's: the frames are protobuf, and the content type says so.
func (rawCodec) Name() string { return "proto" }

func (p *GRPCProxy) handle(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	ctx := ss.Context()
	p.mu.Lock()
	p.calls[method]++
	p.total++
	f := p.fault
	applies := f.Method == "" || strings.Contains(method, f.Method)
	if applies {
		p.hits++
		if f.Times > 0 && p.hits > f.Times {
			applies = false
		}
	}
	kill := f.KillAfter > 0 && p.total > f.KillAfter
	p.mu.Unlock()
	if kill {
		go p.Kill()
		<-ctx.Done()
		return status.Error(codes.Unavailable, "proxy killed")
	}
	if applies && f.Stall {
		<-ctx.Done()
		return ctx.Err()
	}
	if applies && f.Code != codes.OK {
		return status.Error(f.Code, "injected by the test proxy")
	}
	if applies && f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	md, _ := metadata.FromIncomingContext(ctx)
	out := metadata.MD{}
	for k, v := range md {
		// The transport sets these itself.
		if strings.HasPrefix(k, ":") || strings.HasPrefix(k, "grpc-") || k == "content-type" || k == "user-agent" || k == "te" {
			continue
		}
		out[k] = v
	}
	uctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ctx, out))
	defer cancel()
	cs, err := p.upstream.NewStream(uctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method,
		grpc.ForceCodec(rawCodec{}), grpc.MaxCallRecvMsgSize(128<<20), grpc.MaxCallSendMsgSize(128<<20))
	if err != nil {
		return err
	}
	// Client to server.
	go func() {
		for {
			var fr rawFrame
			if err := ss.RecvMsg(&fr); err != nil {
				if err == io.EOF {
					cs.CloseSend()
				} else {
					cancel()
				}
				return
			}
			p.up.Add(int64(len(fr.b)))
			if err := cs.SendMsg(&fr); err != nil {
				return
			}
		}
	}()
	// Server to client.
	sent := 0
	for {
		var fr rawFrame
		err := cs.RecvMsg(&fr)
		if err == io.EOF {
			ss.SetTrailer(cs.Trailer())
			return nil
		}
		if err != nil {
			return err
		}
		if sent == 0 {
			if h, err := cs.Header(); err == nil {
				ss.SendHeader(h)
			}
		}
		if applies && f.StallAfter > 0 && sent >= f.StallAfter {
			<-ctx.Done()
			return ctx.Err()
		}
		p.down.Add(int64(len(fr.b)))
		if err := ss.SendMsg(&fr); err != nil {
			return err
		}
		sent++
	}
}
