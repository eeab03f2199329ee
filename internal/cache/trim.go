package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Trimming follows the Go build cache: an entry's modification time is its
// last use, refreshed at most once per useGranularity so that a hit costs no
// write in the common case, and entries unused for longer than a maximum age
// are removed. Removal is per file and a file removal is atomic, so a build
// in another process that loses an entry mid-way sees a miss (or a missing
// blob while restoring) and runs the action again; it never reads half an
// entry.
const (
	// useGranularity is how stale an entry's mtime may be before a use
	// refreshes it.
	useGranularity = time.Hour
	// DefaultMaxAge is how long an unused entry survives the automatic trim.
	DefaultMaxAge = 7 * 24 * time.Hour
	// AutoTrimInterval is the least time between two automatic trims.
	AutoTrimInterval = 24 * time.Hour
	// trimFile records when the cache was last trimmed.
	trimFile = "trim.txt"
	// tmpMaxAge: temp files older than this were left by a crashed writer.
	tmpMaxAge = 24 * time.Hour
)

// markUsed refreshes the modification time of the entry at path when it is
// older than useGranularity. mtime is the entry's current modification time.
func markUsed(path string, mtime, now time.Time) bool {
	if now.Sub(mtime) < useGranularity {
		return false
	}
	// A failure (read-only cache, entry just trimmed) only makes the entry
	// look older than it is.
	return os.Chtimes(path, now, now) == nil
}

// markBlobUsed is markUsed for a blob whose mtime is not known yet.
func (c *Cache) markBlobUsed(d Digest, now time.Time) {
	p := c.casPath(d)
	if fi, err := os.Stat(p); err == nil {
		markUsed(p, fi.ModTime(), now)
	}
}

// TrimOptions says what Trim removes.
type TrimOptions struct {
	// MaxAge removes entries unused for longer than this (0: no age limit).
	MaxAge time.Duration
	// MaxSize then removes the least recently used entries until the cache
	// holds at most this many bytes (0: no size limit).
	MaxSize int64
	// Now is the time trimming measures ages against (zero: time.Now()).
	Now time.Time
}

// TrimStats reports what Trim did.
type TrimStats struct {
	RemovedEntries int64
	RemovedBytes   int64
	Info
}

// Info describes the cache's contents.
type Info struct {
	Dir         string
	ActionCount int64 // entries of the action cache
	BlobCount   int64 // blobs of the CAS
	TreeCount   int64 // trees (unpacked environments and interpreters)
	Bytes       int64 // bytes of all three
	// LastTrim is when the cache was last trimmed (zero: never).
	LastTrim time.Time
}

type trimEntry struct {
	path  string
	size  int64
	mtime time.Time
	tree  bool // a directory of trees/, removed as a whole
}

// entries lists every AC entry and blob.
func (c *Cache) entries(ctx context.Context) ([]trimEntry, Info, error) {
	info := Info{Dir: c.dir, LastTrim: c.lastTrim()}
	var out []trimEntry
	for _, sub := range []string{"ac", "cas"} {
		root := filepath.Join(c.dir, sub)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // trimmed or cleaned by another process
				}
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			out = append(out, trimEntry{path: p, size: fi.Size(), mtime: fi.ModTime()})
			info.Bytes += fi.Size()
			if sub == "ac" {
				info.ActionCount++
			} else {
				info.BlobCount++
			}
			return nil
		})
		if err != nil {
			return nil, info, fmt.Errorf("list cache %s: %w", root, err)
		}
	}
	trees, err := c.treeEntries(ctx, &info)
	if err != nil {
		return nil, info, err
	}
	return append(out, trees...), info, nil
}

// Stat describes the cache without changing it.
func (c *Cache) Stat(ctx context.Context) (Info, error) {
	_, info, err := c.entries(ctx)
	return info, err
}

// Trim removes entries unused for longer than opt.MaxAge, then the least
// recently used ones until the cache fits opt.MaxSize, and temp files left
// by crashed writers. It records the time of the trim.
func (c *Cache) Trim(ctx context.Context, opt TrimOptions) (TrimStats, error) {
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	ents, info, err := c.entries(ctx)
	if err != nil {
		return TrimStats{Info: info}, err
	}
	st := TrimStats{Info: info}
	remove := func(e trimEntry) {
		if e.tree {
			// Out of the way in one rename, so no reader sees half a
			// tree, then removed at leisure.
			tmp, err := c.TempDir()
			if err != nil {
				return
			}
			aside := filepath.Join(tmp, "tree")
			if err := os.Rename(e.path, aside); err != nil {
				os.Remove(tmp)
				return
			}
			RemoveTree(tmp)
			st.RemovedEntries++
			st.RemovedBytes += e.size
			st.Bytes -= e.size
			st.TreeCount--
			return
		}
		if err := os.Remove(e.path); err == nil {
			st.RemovedEntries++
			st.RemovedBytes += e.size
			st.Bytes -= e.size
			if strings.Contains(e.path, string(filepath.Separator)+"ac"+string(filepath.Separator)) {
				st.ActionCount--
			} else {
				st.BlobCount--
			}
		}
	}
	// Oldest first, so the size limit removes the least recently used.
	sort.Slice(ents, func(i, j int) bool { return ents[i].mtime.Before(ents[j].mtime) })
	kept := ents[:0]
	for _, e := range ents {
		if opt.MaxAge > 0 && now.Sub(e.mtime) > opt.MaxAge {
			remove(e)
			continue
		}
		kept = append(kept, e)
	}
	for _, e := range kept {
		if opt.MaxSize <= 0 || st.Bytes <= opt.MaxSize {
			break
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
		remove(e)
	}
	if tmps, err := os.ReadDir(filepath.Join(c.dir, "tmp")); err == nil {
		for _, t := range tmps {
			if fi, err := t.Info(); err == nil && now.Sub(fi.ModTime()) > tmpMaxAge {
				RemoveTree(filepath.Join(c.dir, "tmp", t.Name()))
			}
		}
	}
	if err := c.writeTrimTime(now); err != nil {
		return st, err
	}
	st.LastTrim = now
	return st, nil
}

// AutoTrim trims entries older than maxAge when the last trim is more than
// AutoTrimInterval ago. A cache never trimmed before only records the time,
// so the first build on a new cache does not pay for a walk. It reports
// whether it trimmed.
func (c *Cache) AutoTrim(ctx context.Context, maxAge time.Duration, now time.Time) (bool, TrimStats, error) {
	last := c.lastTrim()
	if last.IsZero() {
		return false, TrimStats{}, c.writeTrimTime(now)
	}
	if now.Sub(last) < AutoTrimInterval {
		return false, TrimStats{}, nil
	}
	st, err := c.Trim(ctx, TrimOptions{MaxAge: maxAge, Now: now})
	return true, st, err
}

func (c *Cache) lastTrim() time.Time {
	b, err := os.ReadFile(filepath.Join(c.dir, trimFile))
	if err != nil {
		return time.Time{}
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(sec, 0)
}

func (c *Cache) writeTrimTime(now time.Time) error {
	f, err := c.tempFile()
	if err != nil {
		return fmt.Errorf("record trim time: %w", err)
	}
	_, err = fmt.Fprintf(f, "%d\n", now.Unix())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = commit(f.Name(), filepath.Join(c.dir, trimFile))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("record trim time: %w", err)
	}
	return nil
}
