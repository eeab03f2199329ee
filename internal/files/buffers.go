package files

import (
	"io"
	"sync"
)

// Buffers lends copy buffers, so that code copying or hashing file after
// file (a restore puts hundreds of thousands of outputs in place, a cold
// build hashes every source) does not allocate one per file: io.Copy's own
// 32 KiB buffer per call was most of what such builds allocated. The zero
// value is ready; a Buffers must not be copied after first use.
type Buffers struct {
	pool sync.Pool // *[]byte
}

// Copy is io.Copy through one of b's buffers. dst's ReadFrom and src's
// WriteTo are hidden: an *os.File's would copy through a buffer of its
// own.
func (b *Buffers) Copy(dst io.Writer, src io.Reader) (int64, error) {
	bp, _ := b.pool.Get().(*[]byte)
	if bp == nil {
		buf := make([]byte, 64<<10)
		bp = &buf
	}
	defer b.pool.Put(bp)
	return io.CopyBuffer(writerOnly{dst}, readerOnly{src}, *bp)
}

type writerOnly struct{ io.Writer }
type readerOnly struct{ io.Reader }
