package deploy

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// LoadConfig reads region and credentials from the standard chain
// (environment, shared config and credentials files, SSO, IMDS). The SDK
// itself honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>.
func LoadConfig(ctx context.Context) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, fmt.Errorf("AWS configuration: %w", brief(err))
	}
	return cfg, nil
}

// awsEnv holds the clients of one session, one set per region, and the
// account the credentials belong to, asked of STS only when a stack needs
// it: an up-to-date stack is checked without it.
type awsEnv struct {
	cfg aws.Config

	mu      sync.Mutex
	regions map[string]*regionClients

	accountOnce sync.Once
	account     string
	accountErr  error
}

type regionClients struct {
	region string
	cfn    *cloudformation.Client
	s3     *s3.Client
	ssm    *ssm.Client
	// lambda is made on first use: only a hotswap calls Lambda.
	lambdaOnce sync.Once
	lambda     *lambda.Client
	// s3Base is the S3 endpoint override, if any, for template URLs.
	s3Base string

	ssmValues sync.Map // SSM parameter name → *ssmValue
}

func newAWSEnv(cfg aws.Config) *awsEnv {
	return &awsEnv{cfg: cfg, regions: map[string]*regionClients{}}
}

// clients returns the clients for the stack's region ("" = the
// configuration's region).
func (e *awsEnv) clients(region string) (*regionClients, error) {
	if region == "" {
		region = e.cfg.Region
	}
	if region == "" {
		return nil, fmt.Errorf("no AWS region: set AWS_REGION (or a profile's region), or give the stack an environment")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.regions[region]; c != nil {
		return c, nil
	}
	c := &regionClients{region: region}
	c.cfn = cloudformation.NewFromConfig(e.cfg, func(o *cloudformation.Options) { o.Region = region })
	c.ssm = ssm.NewFromConfig(e.cfg, func(o *ssm.Options) { o.Region = region })
	c.s3 = s3.NewFromConfig(e.cfg, func(o *s3.Options) {
		o.Region = region
		// An endpoint override (a local emulator, a VPC endpoint by IP)
		// rarely resolves bucket-named host names; path style always works.
		if o.BaseEndpoint != nil {
			o.UsePathStyle = true
			c.s3Base = *o.BaseEndpoint
		}
	})
	e.regions[region] = c
	return c, nil
}

// lambdaClient returns the region's Lambda client.
func (e *awsEnv) lambdaClient(rc *regionClients) *lambda.Client {
	rc.lambdaOnce.Do(func() {
		rc.lambda = lambda.NewFromConfig(e.cfg, func(o *lambda.Options) { o.Region = rc.region })
	})
	return rc.lambda
}

// accountID asks STS once which account the credentials are for.
func (e *awsEnv) accountID(ctx context.Context) (string, error) {
	e.accountOnce.Do(func() {
		out, err := sts.NewFromConfig(e.cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			e.accountErr = fmt.Errorf("find the AWS account of the credentials (STS GetCallerIdentity): %w", brief(err))
			return
		}
		e.account = aws.ToString(out.Account)
	})
	return e.account, e.accountErr
}

// stackEnv is a stack's resolved environment.
type stackEnv struct {
	*regionClients
	account   string
	partition string
}

// resolveEnv finds the account and region a stack deploys to and checks
// that the credentials are for that account.
func (e *awsEnv) resolveEnv(ctx context.Context, s *Stack) (*stackEnv, error) {
	rc, err := e.clients(s.Region)
	if err != nil {
		return nil, err
	}
	acct, err := e.accountID(ctx)
	if err != nil {
		return nil, err
	}
	if s.Account != "" && s.Account != acct {
		return nil, fmt.Errorf("stack %s is for account %s, but the credentials are for account %s: use credentials (AWS_PROFILE) of that account", s.Name(), s.Account, acct)
	}
	return &stackEnv{regionClients: rc, account: acct, partition: partitionOf(rc.region)}, nil
}

func partitionOf(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	case strings.HasPrefix(region, "us-iso-"):
		return "aws-iso"
	case strings.HasPrefix(region, "us-isob-"):
		return "aws-iso-b"
	}
	return "aws"
}

func urlSuffix(partition string) string {
	if partition == "aws-cn" {
		return "amazonaws.com.cn"
	}
	return "amazonaws.com"
}

// resolve replaces the placeholders the CDK leaves in bucket names, keys
// and role ARNs for the deploy tooling to fill in.
func (se *stackEnv) resolve(s string) string {
	if !strings.Contains(s, "${") {
		return s
	}
	return strings.NewReplacer(
		"${AWS::AccountId}", se.account,
		"${AWS::Region}", se.region,
		"${AWS::Partition}", se.partition,
		"${AWS::URLSuffix}", urlSuffix(se.partition),
	).Replace(s)
}

// templateURL turns the template asset's s3://bucket/key into the HTTPS URL
// CloudFormation reads templates from. With an S3 endpoint override the
// URL is on that endpoint; AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION (which
// the CDK CLI reads too) overrides it when CloudFormation must reach S3 by
// another address.
func (se *stackEnv) templateURL(s3url string, base string) (string, error) {
	rest, ok := strings.CutPrefix(se.resolve(s3url), "s3://")
	if !ok {
		return "", fmt.Errorf("template asset URL %q is not an s3:// URL", s3url)
	}
	bucket, key, ok := strings.Cut(rest, "/")
	if !ok {
		return "", fmt.Errorf("template asset URL %q has no object key", s3url)
	}
	if base == "" {
		base = se.s3Base
		// A loopback IP as an S3 host reads as a bucket name to emulators
		// that parse virtual-hosted URLs (moto takes 127.0.0.1 as bucket
		// "127"); localhost is the same interface without that ambiguity.
		base = strings.Replace(base, "://127.0.0.1", "://localhost", 1)
	}
	if base != "" {
		return strings.TrimRight(base, "/") + "/" + bucket + "/" + key, nil
	}
	return fmt.Sprintf("https://s3.%s.%s/%s/%s", se.region, urlSuffix(se.partition), bucket, key), nil
}
