package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/pipebuild/pipe/internal/ziparchive"
)

// PrebuiltZip is a directory that a build already zipped, byte for byte as
// ziparchive.Write would (a python_bundle's dist/<pkg>/<name>/ and <name>.zip).
type PrebuiltZip struct {
	Dir, Zip string
}

// publisher uploads file assets, each bucket/key at most once per run
// whatever the number of stacks naming it, and only when S3 does not hold
// it yet: asset keys are content hashes, so an existing object is the same
// bytes.
type publisher struct {
	env  *awsEnv
	sem  chan struct{}
	zips []PrebuiltZip

	mu    sync.Mutex
	calls map[string]*publishCall
	// Uploaded counts the objects this run put, for the summary.
	uploaded int
	bytes    int64
}

type publishCall struct {
	done     chan struct{}
	err      error
	uploaded bool
}

func newPublisher(env *awsEnv, parallel int, zips []PrebuiltZip) *publisher {
	if parallel < 1 {
		parallel = 8
	}
	return &publisher{env: env, sem: make(chan struct{}, parallel), zips: zips, calls: map[string]*publishCall{}}
}

// resolvedAsset is an asset to publish with the clients of its region.
type resolvedAsset struct {
	*AssetPlan
	rc *regionClients
}

// publish uploads the assets S3 lacks, in parallel, bounded, and returns
// the number of objects it uploaded.
func (p *publisher) publish(ctx context.Context, s *Stack, assets []*AssetPlan) (int, error) {
	var wg sync.WaitGroup
	errs := make([]error, len(assets))
	up := make([]bool, len(assets))
	for i, a := range assets {
		if a.Present {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, err := p.env.clients(a.Region)
			if err == nil {
				up[i], err = p.publishOne(ctx, &resolvedAsset{AssetPlan: a, rc: rc})
			}
			if err != nil {
				errs[i] = fmt.Errorf("stack %s: asset %s: %w", s.Name(), a.label(), err)
			}
		}()
	}
	wg.Wait()
	n := 0
	for _, u := range up {
		if u {
			n++
		}
	}
	return n, errors.Join(errs...)
}

func (a *AssetPlan) label() string {
	if a.Asset.DisplayName != "" {
		return a.Asset.DisplayName
	}
	return a.Asset.ID
}

// publishOne uploads one asset unless this run or an earlier one already
// did; concurrent requests for the same object wait for the first. The
// plan said S3 lacks the object, unless it could not tell: then S3 is
// asked again.
func (p *publisher) publishOne(ctx context.Context, a *resolvedAsset) (bool, error) {
	k := a.Region + "/" + a.Bucket + "/" + a.Key
	p.mu.Lock()
	c := p.calls[k]
	if c != nil {
		p.mu.Unlock()
		select {
		case <-c.done:
			return false, c.err
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	c = &publishCall{done: make(chan struct{})}
	p.calls[k] = c
	p.mu.Unlock()
	defer close(c.done)

	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		c.err = ctx.Err()
		return false, c.err
	}
	defer func() { <-p.sem }()
	if !a.Checked {
		exists, err := objectExists(ctx, a.rc, a.Bucket, a.Key)
		if err != nil {
			c.err = err
			return false, err
		}
		if exists {
			return false, nil
		}
	}
	n, err := p.upload(ctx, a)
	if err != nil {
		c.err = err
		return false, err
	}
	p.mu.Lock()
	p.uploaded++
	p.bytes += n
	p.mu.Unlock()
	c.uploaded = true
	return true, nil
}

// objectExists asks S3 whether an object is there (HeadObject: a read).
func objectExists(ctx context.Context, rc *regionClients, bucket, key string) (bool, error) {
	_, err := rc.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err == nil {
		return true, nil
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket" {
			return false, fmt.Errorf("bucket %s does not exist: run `cdk bootstrap` for this account and region", bucket)
		}
		return false, nil
	}
	return false, fmt.Errorf("check s3://%s/%s: %w", bucket, key, brief(err))
}

// upload puts the asset's bytes: a file as it is, a directory as a
// deterministic zip (a prebuilt one when the build made it already).
func (p *publisher) upload(ctx context.Context, ra *resolvedAsset) (int64, error) {
	a := ra.Asset
	if a.Executable {
		return 0, fmt.Errorf("assets built by a command (executable sources) are not supported by pipe deploy; deploy this stack with the CDK CLI")
	}
	fi, err := os.Stat(a.Source)
	if err != nil {
		return 0, fmt.Errorf("asset source: %w", brief(err))
	}
	path := a.Source
	contentType := ""
	if fi.IsDir() {
		if !a.Zip {
			return 0, fmt.Errorf("%s is a directory but its packaging is \"file\"", a.Source)
		}
		contentType = "application/zip"
		zip, err := p.prebuilt(a.Source)
		if err != nil {
			return 0, err
		}
		if zip == "" {
			tmp, err := os.CreateTemp("", "pipe-asset-*.zip")
			if err != nil {
				return 0, err
			}
			defer os.Remove(tmp.Name())
			_, err = ziparchive.Write(tmp, a.Source)
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return 0, fmt.Errorf("zip %s: %w", a.Source, brief(err))
			}
			zip = tmp.Name()
		}
		path = zip
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	in := &s3.PutObjectInput{
		Bucket:        aws.String(ra.Bucket),
		Key:           aws.String(ra.Key),
		Body:          f,
		ContentLength: aws.Int64(st.Size()),
	}
	if contentType != "" {
		in.ContentType = aws.String(contentType)
	}
	if _, err := ra.rc.s3.PutObject(ctx, in); err != nil {
		return 0, fmt.Errorf("upload to s3://%s/%s: %w", ra.Bucket, ra.Key, brief(err))
	}
	return st.Size(), nil
}

// prebuilt returns the zip of a prebuilt directory whose files are the
// asset directory's (same paths, execute bits and bytes), or "". The CDK
// stages a copy of the directory into the cloud assembly, so identity of
// paths cannot tell; content can, and comparing is cheaper than zipping.
func (p *publisher) prebuilt(dir string) (string, error) {
	if len(p.zips) == 0 {
		return "", nil
	}
	want, err := listFiles(dir)
	if err != nil {
		return "", err
	}
	for _, z := range p.zips {
		if _, err := os.Stat(z.Zip); err != nil {
			continue
		}
		have, err := listFiles(z.Dir)
		if err != nil || !slices.Equal(want, have) {
			continue
		}
		same, err := sameContent(dir, z.Dir, want)
		if err != nil {
			return "", err
		}
		if same {
			return z.Zip, nil
		}
	}
	return "", nil
}

type listedFile struct {
	rel  string
	size int64
	exec bool
}

func listFiles(dir string) ([]listedFile, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	var out []listedFile
	err = filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(real, p)
		out = append(out, listedFile{filepath.ToSlash(rel), fi.Size(), fi.Mode()&0o111 != 0})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].rel < out[j].rel })
	return out, err
}

func sameContent(a, b string, files []listedFile) (bool, error) {
	ra, err := filepath.EvalSymlinks(a)
	if err != nil {
		return false, err
	}
	rb, err := filepath.EvalSymlinks(b)
	if err != nil {
		return false, err
	}
	if ra == rb {
		return true, nil
	}
	bufA := make([]byte, 64<<10)
	bufB := make([]byte, 64<<10)
	for _, f := range files {
		same, err := sameFile(filepath.Join(ra, f.rel), filepath.Join(rb, f.rel), bufA, bufB)
		if err != nil || !same {
			return false, err
		}
	}
	return true, nil
}

func sameFile(a, b string, bufA, bufB []byte) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	for {
		na, ea := io.ReadFull(fa, bufA)
		nb, eb := io.ReadFull(fb, bufB)
		if na != nb || !bytes.Equal(bufA[:na], bufB[:nb]) {
			return false, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == io.EOF || eb == io.ErrUnexpectedEOF, nil
		}
		if ea != nil {
			return false, ea
		}
		if eb != nil {
			return false, eb
		}
	}
}
