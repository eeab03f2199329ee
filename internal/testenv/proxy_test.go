package testenv

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestClassify: which calls count as writes decides what the deploy tests
// assert about a no-op deploy, so the rule is pinned here.
func TestClassify(t *testing.T) {
	sig := func(service string) string {
		return "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/" + service + "/aws4_request, SignedHeaders=host, Signature=0"
	}
	form := func(body string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		r.Header.Set("Authorization", sig("cloudformation"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return r
	}
	target := func(service, op string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("{}"))
		r.Header.Set("Authorization", sig(service))
		r.Header.Set("X-Amz-Target", "AmazonSSM."+op)
		return r
	}
	s3 := func(method string) *http.Request {
		r := httptest.NewRequest(method, "/bucket/key", nil)
		r.Header.Set("Authorization", sig("s3"))
		return r
	}
	for _, c := range []struct {
		req   *http.Request
		want  string
		write bool
	}{
		{form("Action=DescribeStacks&StackName=A"), "cloudformation DescribeStacks A", false},
		{form("Action=CreateChangeSet&StackName=A"), "cloudformation CreateChangeSet A", true},
		{target("ssm", "GetParameter"), "ssm GetParameter", false},
		{target("ssm", "PutParameter"), "ssm PutParameter", true},
		{s3(http.MethodHead), "s3 HEAD /bucket/key", false},
		{s3(http.MethodPut), "s3 PUT /bucket/key", true},
	} {
		got := classify(c.req)
		if got.String() != c.want || got.Write != c.write {
			t.Errorf("classify = %q write %v, want %q write %v", got, got.Write, c.want, c.write)
		}
	}
}
