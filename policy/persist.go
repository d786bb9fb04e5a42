package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// persistPath is where the bundle of s is persisted.
func (e *Engine) persistPath(s *source) string {
	return filepath.Join(e.cfg.PersistDir, s.cfg.Name+".tar.gz")
}

// persistCandidate stores an activated download of a persist: true source
// (only bundles that compiled and activated reach this point). Called with
// reloadMu held. It writes only when the source's content changed since the
// last write.
func (e *Engine) persistCandidate(c *candidate) error {
	s := c.src
	if !s.cfg.Persist || c.from != FromDownload || c.rb.sum == s.persistedSum {
		return nil
	}
	if err := writeFileAtomic(e.persistPath(s), c.raw); err != nil {
		return fmt.Errorf("policy: persist bundle %s: %w", s.cfg.Name, err)
	}
	s.persistedSum = c.rb.sum
	return nil
}

// readPersisted reads and verifies the persisted bundle of s. It returns
// nil, nil when persistence is off or no bundle was persisted yet.
func (e *Engine) readPersisted(ctx context.Context, s *source) (*candidate, error) {
	if !s.cfg.Persist {
		return nil, nil
	}
	p := e.persistPath(s)
	info, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("persisted bundle: %w", err)
	}
	if info.Size() > s.cfg.SizeLimitBytes {
		return nil, fmt.Errorf("persisted bundle %s is larger than size_limit_bytes %d", p, s.cfg.SizeLimitBytes)
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("persisted bundle: %w", err)
	}
	rb, err := readTarball(ctx, s.cfg.Name, raw, s.vc)
	if err != nil {
		return nil, fmt.Errorf("persisted bundle %s: %w", p, err)
	}
	s.persistedSum = rb.sum
	return &candidate{src: s, rb: rb, raw: raw, from: FromPersisted}, nil
}

// writeFileAtomic writes data to path so that a crash leaves either the old
// or the new file: temp file in the same directory, fsync, rename, fsync of
// the directory. The file is 0600.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
