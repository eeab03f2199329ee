// Package ziparchive writes byte-reproducible zip archives: the same tree
// gives the same bytes on any machine. python_bundle zips its bundles with
// it and deploy zips a directory asset with it, and the two must agree
// byte for byte, so the writer lives here rather than in either.
package ziparchive

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"
)

// Level is Write's deflate level. It is fixed because the level is
// part of the bytes: changing it changes every bundle.zip, so it may only
// change with pipe's version (which is in every action key).
const Level = flate.BestSpeed

// zipBig is the size above which a file is compressed twice (once to learn
// its compressed size and CRC, once into the archive) instead of being held
// compressed in memory, so memory stays bounded whatever the tree holds.
const zipBig = 8 << 20

// dosDate1980 is 1980-01-01 in MS-DOS date format ((year-1980)<<9 |
// month<<5 | day), the earliest time a zip can hold; the time field is 0
// (00:00:00).
const dosDate1980 = 0<<9 | 1<<5 | 1

// sIFREG is the Unix type bits of a regular file, as they sit in the top
// half of an entry's external attributes.
const sIFREG = 0o100000

const (
	creatorUnix = 3
	zipVersion  = 20 // 2.0: deflate, no zip64 (files over 4 GiB are refused)
)

// Write writes a byte-reproducible zip of the regular files under dir to
// w and returns the sum of their sizes.
//
// The same tree gives the same bytes on any machine, whatever the files'
// mtimes, owners, umask or the order the file system lists them in:
//
//   - entries are the files only, sorted by slash path (byte order);
//     directories get no entries, so empty directories are not kept
//     (Lambda's unzip and Python's import make directories from file paths);
//   - every entry is dated 1980-01-01 00:00:00 in the MS-DOS fields and has
//     no extra fields at all (no extended timestamps, no uid/gid);
//   - modes are 0755 if the file has any execute bit, else 0644, recorded as
//     Unix modes (creator 3) so unzip and Python's zipfile restore them;
//   - content is deflated at Level, or stored when deflate does not make
//     it smaller (already-compressed data); both are decided by the bytes
//     alone. The deflate stream is Go's compress/flate's, so the bytes are
//     fixed for a given pipe build;
//   - no data descriptors, no archive comment; names are UTF-8 (flag 11 set
//     when non-ASCII).
//
// Symbolic links, sockets, devices, names with a backslash or invalid UTF-8,
// and files of 4 GiB or more are refused with an error naming the file.
// Entries are compressed in parallel; the archive is written in order.
func Write(w io.Writer, dir string) (uncompressed int64, err error) {
	return WriteLayers(w, Layer{Dir: dir})
}

// Layer is one part of a bundle for WriteLayers: a directory, or a zip
// that Write or WriteLayers wrote. Set exactly one field.
type Layer struct {
	Dir string
	Zip string
}

// WriteLayers writes the zip of the union of the layers' files. Its
// bytes are those Write writes for one directory holding all of them:
// every entry is compressed on its own, so an entry's bytes depend on its
// path, mode and content only. A zip layer's entries are therefore copied
// as they are, compressed bytes and all, and re-zipping a bundle whose
// dependencies did not change costs compressing what did plus a copy.
//
// A zip layer must come from Write of the same pipe build (Level is
// fixed per build; an action key that includes pipe's version guarantees
// it). Entries whose headers differ from what Write writes are refused,
// so a foreign zip cannot silently break reproducibility. A path present
// in two layers is an error naming both.
func WriteLayers(w io.Writer, layers ...Layer) (uncompressed int64, err error) {
	var files []zipFile
	for _, l := range layers {
		var lf []zipFile
		switch {
		case l.Dir != "" && l.Zip == "":
			lf, err = listTree(l.Dir)
		case l.Zip != "" && l.Dir == "":
			zr, oerr := zip.OpenReader(l.Zip)
			if oerr != nil {
				return 0, fmt.Errorf("zip layer %s: %w", l.Zip, oerr)
			}
			defer zr.Close()
			lf, err = listZip(l.Zip, &zr.Reader)
		default:
			return 0, fmt.Errorf("zip layer %+v: set one of Dir and Zip", l)
		}
		if err != nil {
			return 0, err
		}
		files = append(files, lf...)
	}
	sort.SliceStable(files, func(i, j int) bool { return files[i].rel < files[j].rel })
	for i := 1; i < len(files); i++ {
		if files[i].rel == files[i-1].rel {
			return 0, fmt.Errorf("zip: %s is in two layers, %s and %s", files[i].rel, files[i-1].layer, files[i].layer)
		}
	}
	zw := zip.NewWriter(w)
	if err := writeEntries(zw, files); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, fmt.Errorf("zip: %w", err)
	}
	for _, f := range files {
		uncompressed += f.size
	}
	return uncompressed, nil
}

type zipFile struct {
	rel   string // slash path, the entry name
	layer string // the directory or zip it comes from, for errors
	abs   string
	raw   *zip.File // set for an entry of a zip layer
	size  int64     // from lstat; the bytes read are what count
	exec  bool
}

// listZip lists a zip layer, checking that Write wrote it.
func listZip(name string, zr *zip.Reader) ([]zipFile, error) {
	files := make([]zipFile, 0, len(zr.File))
	for _, f := range zr.File {
		var why string
		mode := f.ExternalAttrs >> 16
		switch {
		case BadName(f.Name) != "":
			why = BadName(f.Name)
		case f.Flags&^0x800 != 0 || (f.Flags&0x800 != 0) != !isASCII(f.Name):
			why = fmt.Sprintf("flags %#x", f.Flags)
		case f.Method != zip.Store && f.Method != zip.Deflate:
			why = fmt.Sprintf("method %d", f.Method)
		case f.Method == zip.Store && f.CompressedSize64 != f.UncompressedSize64:
			why = "stored entry with two sizes"
		case f.ModifiedDate != dosDate1980 || f.ModifiedTime != 0:
			why = "timestamp not 1980-01-01 00:00"
		case len(f.Extra) != 0 || f.Comment != "":
			why = "extra fields or comment"
		case f.CreatorVersion != creatorUnix<<8|zipVersion || f.ReaderVersion != zipVersion:
			why = fmt.Sprintf("versions %#x/%#x", f.CreatorVersion, f.ReaderVersion)
		case mode != sIFREG|0o644 && mode != sIFREG|0o755 || f.ExternalAttrs&0xffff != 0:
			why = fmt.Sprintf("attributes %#x", f.ExternalAttrs)
		case f.UncompressedSize64 >= 1<<32 || f.CompressedSize64 >= 1<<32:
			why = "4 GiB or more"
		}
		if why != "" {
			return nil, fmt.Errorf("zip layer %s: entry %q was not written by pipe's zip writer (%s); rebuild the layer", name, f.Name, why)
		}
		files = append(files, zipFile{rel: f.Name, layer: name, raw: f, size: int64(f.UncompressedSize64), exec: mode&0o111 != 0})
	}
	return files, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func listTree(dir string) ([]zipFile, error) {
	// The tree may be reached through a link (dist/ → cache); what is
	// refused is links inside it.
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("zip %s: %w", dir, err)
	}
	var files []zipFile
	err = filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("zip %s: %w", dir, err)
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(real, p)
		if err != nil {
			return fmt.Errorf("zip %s: %w", dir, err)
		}
		rel = filepath.ToSlash(rel)
		switch t := d.Type(); {
		case t&fs.ModeSymlink != 0:
			return fmt.Errorf("zip %s: %s is a symbolic link; a bundle holds regular files only (copy the target instead)", dir, rel)
		case !t.IsRegular():
			return fmt.Errorf("zip %s: %s is not a regular file (%s)", dir, rel, t)
		}
		if !utf8.ValidString(rel) {
			return fmt.Errorf("zip %s: file name %q is not valid UTF-8", dir, rel)
		}
		if strings.Contains(rel, `\`) {
			return fmt.Errorf(`zip %s: file name %q contains a backslash, which unzip tools read as a path separator`, dir, rel)
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("zip %s: %w", dir, err)
		}
		if info.Size() >= 1<<32 {
			return fmt.Errorf("zip %s: %s is %d bytes; files of 4 GiB or more are not supported", dir, rel, info.Size())
		}
		files = append(files, zipFile{rel: rel, layer: dir, abs: p, size: info.Size(), exec: info.Mode()&0o111 != 0})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(files, func(i, j int) bool { return files[i].rel < files[j].rel })
	return files, nil
}

// compressed is one entry ready to be written. big entries carry no data:
// the writer compresses them again straight into the archive.
type compressed struct {
	method uint16
	crc    uint32
	size   int64
	csize  int64
	data   []byte
	buf    *bytes.Buffer // to return to bufPool once written
	big    bool
	err    error
}

var (
	flatePool = sync.Pool{New: func() any {
		fw, _ := flate.NewWriter(nil, Level)
		return fw
	}}
	bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// writeEntries compresses files on several workers and writes them to zw in
// order. A window bounds how far the workers run ahead of the writer, and
// with it the memory held.
func writeEntries(zw *zip.Writer, files []zipFile) error {
	workers := min(runtime.GOMAXPROCS(0), 8)
	window := make(chan struct{}, 4*workers)
	results := make([]chan compressed, len(files))
	for i := range results {
		results[i] = make(chan compressed, 1)
	}
	jobs := make(chan int)
	done := make(chan struct{})
	var wg sync.WaitGroup
	go func() {
		defer close(jobs)
		for i := range files {
			select {
			case window <- struct{}{}:
			case <-done:
				return
			}
			select {
			case jobs <- i:
			case <-done:
				return
			}
		}
	}()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if files[i].raw != nil {
					results[i] <- compressed{} // copied by the writer
					continue
				}
				results[i] <- compressFile(files[i])
			}
		}()
	}
	err := func() error {
		for i, f := range files {
			c := <-results[i]
			if c.err != nil {
				return c.err
			}
			err := writeEntry(zw, f, c)
			if c.buf != nil {
				bufPool.Put(c.buf)
			}
			if err != nil {
				return err
			}
			<-window
		}
		return nil
	}()
	close(done)
	wg.Wait()
	return err
}

func compressFile(f zipFile) compressed {
	in, err := os.Open(f.abs)
	if err != nil {
		return compressed{err: fmt.Errorf("zip: %w", err)}
	}
	defer in.Close()
	if f.size > zipBig {
		c, err := deflateTo(io.Discard, in)
		if err != nil {
			return compressed{err: fmt.Errorf("zip: read %s: %w", f.abs, err)}
		}
		c.big = true
		return c
	}
	data := make([]byte, 0, f.size+1)
	for {
		n, err := in.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return compressed{err: fmt.Errorf("zip: read %s: %w", f.abs, err)}
		}
		if len(data) == cap(data) {
			// It grew since it was listed; take what is there now.
			data = append(data, 0)[:len(data)]
		}
	}
	c := compressed{method: zip.Store, crc: crc32.ChecksumIEEE(data), size: int64(len(data))}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	fw := flatePool.Get().(*flate.Writer)
	fw.Reset(buf)
	fw.Write(data) // a bytes.Buffer does not fail
	fw.Close()
	flatePool.Put(fw)
	if buf.Len() < len(data) {
		c.method, c.data, c.buf = zip.Deflate, buf.Bytes(), buf
	} else {
		bufPool.Put(buf)
		c.data = data
	}
	c.csize = int64(len(c.data))
	return c
}

// deflateTo compresses r into w and measures it. The method is chosen by
// the result, so a second run over the same bytes, which must produce the
// same stream, can follow the same choice.
func deflateTo(w io.Writer, r io.Reader) (compressed, error) {
	cw := &countWriter{w: w}
	fw := flatePool.Get().(*flate.Writer)
	defer flatePool.Put(fw)
	fw.Reset(cw)
	h := crc32.NewIEEE()
	n, err := io.Copy(fw, io.TeeReader(r, h))
	if err != nil {
		return compressed{}, err
	}
	if err := fw.Close(); err != nil {
		return compressed{}, err
	}
	c := compressed{method: zip.Deflate, crc: h.Sum32(), size: n, csize: cw.n}
	if c.csize >= c.size {
		c.method, c.csize = zip.Store, n
	}
	return c, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func writeEntry(zw *zip.Writer, f zipFile, c compressed) error {
	if f.raw != nil {
		c = compressed{method: f.raw.Method, crc: f.raw.CRC32, size: int64(f.raw.UncompressedSize64), csize: int64(f.raw.CompressedSize64)}
	}
	if c.size >= 1<<32 {
		return fmt.Errorf("zip: %s grew to %d bytes; files of 4 GiB or more are not supported", f.abs, c.size)
	}
	mode := uint32(0o644)
	if f.exec {
		mode = 0o755
	}
	hdr := &zip.FileHeader{
		Name:               f.rel,
		CreatorVersion:     creatorUnix<<8 | zipVersion,
		ReaderVersion:      zipVersion,
		Method:             c.method,
		ModifiedDate:       dosDate1980,
		CRC32:              c.crc,
		CompressedSize64:   uint64(c.csize),
		UncompressedSize64: uint64(c.size),
		ExternalAttrs:      (sIFREG | mode) << 16,
	}
	if !isASCII(f.rel) {
		hdr.Flags |= 0x800 // the name is UTF-8
	}
	out, err := zw.CreateRaw(hdr)
	if err != nil {
		return fmt.Errorf("zip: %s: %w", f.rel, err)
	}
	if f.raw != nil {
		in, err := f.raw.OpenRaw()
		if err == nil {
			_, err = io.Copy(out, in)
		}
		if err != nil {
			return fmt.Errorf("zip layer %s: %s: %w", f.layer, f.rel, err)
		}
		return nil
	}
	if !c.big {
		if _, err := out.Write(c.data); err != nil {
			return fmt.Errorf("zip: %s: %w", f.rel, err)
		}
		return nil
	}
	in, err := os.Open(f.abs)
	if err != nil {
		return fmt.Errorf("zip: %w", err)
	}
	defer in.Close()
	var again compressed
	if c.method == zip.Store {
		h := crc32.NewIEEE()
		n, err := io.Copy(io.MultiWriter(out, h), in)
		if err != nil {
			return fmt.Errorf("zip: %s: %w", f.rel, err)
		}
		again = compressed{method: zip.Store, crc: h.Sum32(), size: n, csize: n}
	} else if again, err = deflateTo(out, in); err != nil {
		return fmt.Errorf("zip: %s: %w", f.rel, err)
	}
	// The header is already written; a file that changed in between would
	// make a corrupt archive, so say so rather than return it.
	if again.crc != c.crc || again.size != c.size || again.csize != c.csize {
		return fmt.Errorf("zip: %s changed while it was being zipped", f.abs)
	}
	return nil
}

// BadName says why a zip entry name (without its trailing slash) is unsafe
// to write or to extract, or returns "". Extraction refuses such entries
// and Write refuses to read a zip layer holding one.
func BadName(n string) string {
	switch {
	case n == "":
		return "empty name"
	case strings.ContainsRune(n, 0):
		return "NUL byte in name"
	case !utf8.ValidString(n):
		return "name is not valid UTF-8"
	case strings.Contains(n, `\`):
		return `backslash in name (a path separator on Windows; refused so no unzip tool can read it as one)`
	case strings.HasPrefix(n, "/"):
		return "absolute path"
	case len(n) >= 2 && n[1] == ':' && (n[0]|0x20 >= 'a' && n[0]|0x20 <= 'z'):
		return "drive-letter path"
	}
	for _, c := range strings.Split(n, "/") {
		switch c {
		case "..":
			return `".." component: the path leaves the target directory`
		case ".":
			return `"." component`
		case "":
			return "empty path component (//)"
		}
	}
	return ""
}
