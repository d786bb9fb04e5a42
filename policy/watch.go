package policy

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce is how long Run waits after the first file event of a burst before
// reloading, so an editor's write+rename or a multi-file copy becomes one
// reload. The timer is not pushed back by later events, so a stream of writes
// cannot postpone reloading forever.
const debounce = 100 * time.Millisecond

// Run watches the bundle sources and reloads on change until ctx is done.
// Path sources are watched with fsnotify when possible and re-read every
// PollInterval otherwise; url sources are polled (see BundleSource). Errors
// are recorded in Status and logged; the old policy keeps serving. Run
// returns when ctx is done and all its goroutines have stopped.
func (e *Engine) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range e.remotes {
		wg.Add(1)
		go func() { defer wg.Done(); e.pollRemote(ctx, s) }()
	}
	if len(e.remotes) < len(e.sources) {
		e.watchPaths(ctx)
	} else {
		<-ctx.Done()
	}
	wg.Wait()
}

// watchPaths reloads on changes of the path sources until ctx is done.
func (e *Engine) watchPaths(ctx context.Context) {
	w, err := e.newWatcher()
	if err != nil {
		e.log.Warn("policy: file watching unavailable, polling instead",
			"error", err, "interval", e.cfg.PollInterval)
		e.poll(ctx)
		return
	}
	defer w.Close()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	pending := false
	arm := func() {
		if !pending {
			pending = true
			timer.Reset(debounce)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				e.poll(ctx)
				return
			}
			if ev.Has(fsnotify.Create) {
				// New directories inside a directory bundle must be watched too.
				if info, err := os.Stat(ev.Name); err == nil && info.IsDir() && e.inDirBundle(ev.Name) {
					_ = addTree(w, ev.Name)
				}
			}
			if e.relevantEvent(ev.Name) {
				arm()
			}
		case err, ok := <-w.Errors:
			if !ok {
				e.poll(ctx)
				return
			}
			e.log.Warn("policy: file watcher error; reloading", "error", err)
			arm()
		case <-timer.C:
			pending = false
			_ = e.Reload(ctx) // errors are recorded and logged by Reload
		}
	}
}

func (e *Engine) poll(ctx context.Context) {
	t := time.NewTicker(e.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = e.Reload(ctx)
		}
	}
}

// newWatcher watches every directory bundle recursively and the parent
// directory of every tarball (editors and deploy tools replace files by rename).
func (e *Engine) newWatcher() (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	for _, src := range e.cfg.Bundles {
		if src.Path == "" {
			continue
		}
		info, err := os.Stat(src.Path)
		if err == nil && info.IsDir() {
			err = addTree(w, src.Path)
		} else {
			err = w.Add(filepath.Dir(src.Path))
		}
		if err != nil {
			_ = w.Close()
			return nil, err
		}
	}
	return w, nil
}

func addTree(w *fsnotify.Watcher, root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return w.Add(p)
		}
		return nil
	})
}

func (e *Engine) inDirBundle(name string) bool {
	for _, src := range e.cfg.Bundles {
		if src.Path == "" {
			continue
		}
		if rel, err := filepath.Rel(src.Path, name); err == nil && !startsWithDotDot(rel) {
			return true
		}
	}
	return false
}

// relevantEvent filters events from watched parent directories down to the
// configured sources.
func (e *Engine) relevantEvent(name string) bool {
	clean := filepath.Clean(name)
	for _, src := range e.cfg.Bundles {
		if src.Path == "" {
			continue
		}
		p := filepath.Clean(src.Path)
		if clean == p {
			return true
		}
		if rel, err := filepath.Rel(p, clean); err == nil && !startsWithDotDot(rel) {
			return true
		}
	}
	return false
}

func startsWithDotDot(rel string) bool {
	return rel == ".." || len(rel) >= 3 && rel[:3] == ".."+string(filepath.Separator)
}
