package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Trees are directories rules keep beside the CAS: an unpacked Python
// environment, a downloaded interpreter. Each is made in tmp/ and renamed
// into trees/<kind>/<name> in one step, so a tree that exists is complete;
// it is never changed afterwards, and it is trimmed like any entry: its
// modification time is its last use, and it goes as a whole.
const treesDir = "trees"

// TreePath is where the tree name of kind lives, whether or not it exists.
// Names are chosen by the caller and must be one path element.
func (c *Cache) TreePath(kind, name string) string {
	return filepath.Join(c.dir, treesDir, kind, name)
}

// Tree returns the path of the tree name of kind and whether it exists. An
// existing tree counts as used.
func (c *Cache) Tree(kind, name string) (string, bool) {
	p := c.TreePath(kind, name)
	fi, err := os.Stat(p)
	if err != nil || !fi.IsDir() {
		return p, false
	}
	markUsed(p, fi.ModTime(), time.Now())
	return p, true
}

// TempDir makes a directory in the cache's tmp/, on the file system the
// trees live on, for a tree under construction.
func (c *Cache) TempDir() (string, error) {
	d, err := os.MkdirTemp(filepath.Join(c.dir, "tmp"), "t-*")
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Join(c.dir, "tmp"), 0o755); err != nil {
			return "", err
		}
		d, err = os.MkdirTemp(filepath.Join(c.dir, "tmp"), "t-*")
	}
	return d, err
}

// CommitTree renames the finished directory tmp into place as the tree name
// of kind and returns its path. When another process committed the same
// tree first, tmp is removed and that tree is used: trees of one name have
// the same content by construction (the name is a digest of what made
// them).
func (c *Cache) CommitTree(tmp, kind, name string) (string, error) {
	dst := c.TreePath(kind, name)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		RemoveTree(tmp)
		return "", err
	}
	err := os.Rename(tmp, dst)
	if err != nil && (errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY)) {
		RemoveTree(tmp)
		return dst, nil
	}
	if err != nil {
		RemoveTree(tmp)
		return "", fmt.Errorf("commit %s: %w", dst, err)
	}
	return dst, nil
}

// RemoveTree removes a tree (or a tree under construction), whose
// directories may be read-only.
func RemoveTree(p string) error {
	makeWritable(p)
	return os.RemoveAll(p)
}

// treeEntries lists the trees as trim entries: one per tree, sized by its
// files, aged by the tree directory's modification time.
func (c *Cache) treeEntries(ctx context.Context, info *Info) ([]trimEntry, error) {
	root := filepath.Join(c.dir, treesDir)
	kinds, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list cache %s: %w", root, err)
	}
	var out []trimEntry
	for _, k := range kinds {
		if !k.IsDir() {
			continue
		}
		trees, err := os.ReadDir(filepath.Join(root, k.Name()))
		if err != nil {
			continue
		}
		for _, t := range trees {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			p := filepath.Join(root, k.Name(), t.Name())
			fi, err := os.Stat(p)
			if err != nil || !fi.IsDir() {
				continue
			}
			var size int64
			filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					if i, err := d.Info(); err == nil {
						size += i.Size()
					}
				}
				return nil
			})
			out = append(out, trimEntry{path: p, size: size, mtime: fi.ModTime(), tree: true})
			info.Bytes += size
			info.TreeCount++
		}
	}
	return out, nil
}

// TreeKindDir is the directory holding the trees of kind in the cache at
// dir, for readers that have no open Cache (analysis looks for downloaded
// interpreters there without creating anything).
func TreeKindDir(dir, kind string) string {
	return filepath.Join(dir, treesDir, kind)
}
