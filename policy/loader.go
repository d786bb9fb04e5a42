package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/loader/filter"
)

// maxFileBytes bounds every file read from a bundle (and a bundle tarball).
const maxFileBytes = 64 << 20

// rawFile is one bundle file held in memory.
type rawFile struct {
	path string // slash-rooted path inside the bundle, e.g. "/policy.rego"
	data []byte
}

// rawBundle is the relevant content of one bundle source, read once so the
// checksum and the parsed bundle describe exactly the same bytes.
type rawBundle struct {
	source string
	files  []rawFile
	sum    [sha256.Size]byte
}

// relevant reports whether a bundle file takes part in the policy. Tests
// (*_test.rego) and unrelated files (README.md, ...) are skipped so that they
// neither affect the checksum nor get compiled into the serving policy.
func relevant(name string) bool {
	base := path.Base(filepath.ToSlash(name))
	switch {
	case strings.HasSuffix(base, "_test.rego"):
		return false
	case strings.HasSuffix(base, bundle.RegoExt):
		return true
	case base == ".manifest", base == "data.json", base == "data.yaml", base == "data.yml":
		return true
	}
	return false
}

// skipIrrelevant is a loader filter: it returns true to exclude.
var skipIrrelevant filter.LoaderFilter = func(abspath string, info fs.FileInfo, _ int) bool {
	if info.IsDir() {
		return false
	}
	return !relevant(abspath) && path.Base(filepath.ToSlash(abspath)) != signaturesFile
}

// signaturesFile is where `opa build --signing-key` puts the bundle's
// signature. A bundle carrying one is refused unless the source configures
// the keys to verify it (as OPA does): a signature nobody checks would
// only look like protection.
const signaturesFile = ".signatures.json"

// readSource reads a directory or .tar.gz bundle into memory through OPA's
// directory/tarball loaders. With vc, every file is read and the bundle
// signature is verified before the files are filtered.
func readSource(ctx context.Context, src string, vc *bundle.VerificationConfig) (*rawBundle, error) {
	info, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", src, err)
	}
	if !info.IsDir() {
		if info.Size() > maxFileBytes {
			return nil, fmt.Errorf("bundle %s: file is larger than %d bytes", src, maxFileBytes)
		}
		raw, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %w", src, err)
		}
		return readTarball(ctx, src, raw, vc)
	}
	// Follow symlinks: Kubernetes ConfigMap volumes are symlinks into ..data.
	return readLoader(ctx, src, bundle.NewDirectoryLoader(src).WithFollowSymlinks(true), vc)
}

// readTarball reads an in-memory .tar.gz bundle; src names it in errors.
func readTarball(ctx context.Context, src string, raw []byte, vc *bundle.VerificationConfig) (*rawBundle, error) {
	if len(raw) < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
		return nil, fmt.Errorf("bundle %s: not a gzip tarball", src)
	}
	return readLoader(ctx, src, bundle.NewTarballLoaderWithBaseURL(bytes.NewReader(raw), src), vc)
}

func readLoader(ctx context.Context, src string, loader bundle.DirectoryLoader, vc *bundle.VerificationConfig) (*rawBundle, error) {
	if vc == nil {
		loader = loader.WithFilter(skipIrrelevant)
	}
	loader = loader.WithSizeLimitBytes(maxFileBytes)

	var files []rawFile
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d, err := loader.NextFile()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %w", src, err)
		}
		var buf bytes.Buffer
		_, err = d.Read(&buf, maxFileBytes+1) // io.CopyN: EOF means the file was shorter
		_ = d.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("bundle %s: read %s: %w", src, d.Path(), err)
		}
		if buf.Len() > maxFileBytes {
			return nil, fmt.Errorf("bundle %s: %s is larger than %d bytes", src, d.Path(), maxFileBytes)
		}
		if vc == nil && path.Base(filepath.ToSlash(d.Path())) == signaturesFile && path.Dir(path.Clean("/"+filepath.ToSlash(d.Path()))) == "/" {
			return nil, fmt.Errorf("bundle %s: the bundle is signed (%s) but this source configures no signing keys; add signing.keys to verify it", src, signaturesFile)
		}
		// The tarball loader filters files, not paths under skipped dirs.
		if vc == nil && !relevant(d.Path()) {
			continue
		}
		files = append(files, rawFile{path: path.Clean("/" + filepath.ToSlash(d.Path())), data: buf.Bytes()})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	for i := 1; i < len(files); i++ {
		if files[i].path == files[i-1].path {
			return nil, fmt.Errorf("bundle %s: duplicate file %s", src, files[i].path)
		}
	}
	if vc != nil {
		if err := verifyFiles(files, vc); err != nil {
			return nil, fmt.Errorf("bundle %s: %w", src, err)
		}
		kept := files[:0:0]
		for _, f := range files {
			if relevant(f.path) {
				kept = append(kept, f)
			}
		}
		files = kept
	}
	rb := &rawBundle{source: src, files: files}
	h := sha256.New()
	var n [8]byte
	for _, f := range rb.files {
		binary.BigEndian.PutUint64(n[:], uint64(len(f.path)))
		h.Write(n[:])
		h.Write([]byte(f.path))
		binary.BigEndian.PutUint64(n[:], uint64(len(f.data)))
		h.Write(n[:])
		h.Write(f.data)
	}
	h.Sum(rb.sum[:0])
	return rb, nil
}

// parse turns the in-memory files into an OPA bundle (Rego v1 by default;
// the manifest's rego_version is honored).
func (rb *rawBundle) parse() (*bundle.Bundle, error) {
	b, err := bundle.NewCustomReader(&memLoader{files: rb.files, base: rb.source}).
		WithBaseDir(rb.source).
		WithRegoVersion(ast.RegoV1).
		WithSkipBundleVerification(true).
		WithSizeLimitBytes(maxFileBytes + 1).
		Read()
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", rb.source, err)
	}
	return &b, nil
}

func (rb *rawBundle) shortSum() string {
	return "sha256:" + hex.EncodeToString(rb.sum[:6])
}

// memLoader serves already-read files to bundle.Reader.
type memLoader struct {
	files []rawFile
	base  string
	i     int
}

var _ bundle.DirectoryLoader = (*memLoader)(nil)

func (m *memLoader) NextFile() (*bundle.Descriptor, error) {
	if m.i >= len(m.files) {
		return nil, io.EOF
	}
	f := m.files[m.i]
	m.i++
	// *bytes.Buffer lets the reader take the bytes without copying.
	return bundle.NewDescriptor(filepath.Join(m.base, f.path), f.path, bytes.NewBuffer(f.data)), nil
}

func (m *memLoader) WithFilter(filter.LoaderFilter) bundle.DirectoryLoader   { return m }
func (m *memLoader) WithPathFormat(bundle.PathFormat) bundle.DirectoryLoader { return m }
func (m *memLoader) WithSizeLimitBytes(int64) bundle.DirectoryLoader         { return m }
func (m *memLoader) WithFollowSymlinks(bool) bundle.DirectoryLoader          { return m }
