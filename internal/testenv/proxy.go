package testenv

import (
	"bytes"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Call is one request the proxy forwarded.
type Call struct {
	Service string // cloudformation, s3, ssm, sts…
	Action  string // Action / X-Amz-Target operation, or METHOD for S3
	Stack   string // StackName of CloudFormation calls
	Path    string
	Write   bool
	Start   time.Time
	End     time.Time
}

func (c Call) String() string {
	s := c.Service + " " + c.Action
	if c.Stack != "" {
		s += " " + c.Stack
	}
	if c.Service == "s3" {
		s += " " + c.Path
	}
	return s
}

// CountingProxy is a test double in front of moto: a loopback reverse
// proxy that records every call, so tests can count write calls (any
// CloudFormation, S3 or SSM request whose action is not Describe*, Get*,
// List* or Head*; for REST services such as Lambda, any method but GET and
// HEAD) and see when each stack's calls happened.
type CountingProxy struct {
	URL string
	// Delay, when set, holds every write call that long before forwarding
	// it, so that concurrent deployments visibly overlap.
	Delay time.Duration
	// OnRequest, when set, sees each call before it is forwarded.
	OnRequest func(Call)

	srv   *http.Server
	mu    sync.Mutex
	calls []Call
}

// NewCountingProxy starts a proxy to target on a free loopback port.
func NewCountingProxy(target string) (*CountingProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &CountingProxy{URL: "http://" + l.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(u)
	// A client that gives up (a test cancelling a deploy) is expected.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := classify(r)
		c.Start = time.Now()
		if p.OnRequest != nil {
			p.OnRequest(c)
		}
		if c.Write && p.Delay > 0 {
			time.Sleep(p.Delay)
		}
		rp.ServeHTTP(w, r)
		c.End = time.Now()
		p.mu.Lock()
		p.calls = append(p.calls, c)
		p.mu.Unlock()
	})}
	go p.srv.Serve(l)
	return p, nil
}

// Close stops the proxy.
func (p *CountingProxy) Close() { p.srv.Close() }

// Reset forgets the calls recorded so far.
func (p *CountingProxy) Reset() {
	p.mu.Lock()
	p.calls = nil
	p.mu.Unlock()
}

// Calls returns the calls recorded since the last Reset.
func (p *CountingProxy) Calls() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Call(nil), p.calls...)
}

// Writes returns the write calls recorded since the last Reset.
func (p *CountingProxy) Writes() []Call {
	var out []Call
	for _, c := range p.Calls() {
		if c.Write && c.Service != "sts" {
			out = append(out, c)
		}
	}
	return out
}

// classify reads what a request does: the service from the signature's
// credential scope, the operation from the query-protocol form, the JSON
// protocol's target header, or (S3) the method.
func classify(r *http.Request) Call {
	c := Call{Path: r.URL.Path}
	auth := r.Header.Get("Authorization")
	if i := strings.Index(auth, "Credential="); i >= 0 {
		parts := strings.Split(strings.SplitN(auth[i+len("Credential="):], ",", 2)[0], "/")
		if len(parts) >= 4 {
			c.Service = parts[3]
		}
	}
	switch {
	case r.Header.Get("X-Amz-Target") != "":
		t := r.Header.Get("X-Amz-Target")
		c.Action = t[strings.LastIndex(t, ".")+1:]
	case c.Service == "s3":
		c.Action = r.Method
		c.Write = r.Method != http.MethodGet && r.Method != http.MethodHead
		return c
	case strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded"):
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		q, _ := url.ParseQuery(string(body))
		c.Action = q.Get("Action")
		c.Stack = q.Get("StackName")
	default:
		c.Action = r.URL.Query().Get("Action")
		if c.Action == "" {
			// A REST protocol (Lambda): the method and path are the
			// operation; reads are GETs.
			c.Action = r.Method + " " + r.URL.Path
			c.Write = r.Method != http.MethodGet && r.Method != http.MethodHead
			return c
		}
	}
	c.Write = true
	for _, p := range []string{"Describe", "Get", "List", "Head"} {
		if strings.HasPrefix(c.Action, p) {
			c.Write = false
		}
	}
	return c
}
