//go:build !linux

package journal

import (
	"context"
	"errors"
	"syscall"
)

// Watcher is unavailable here: the journal needs Linux's inotify.
type Watcher struct{}

// Watch fails: builds stat their snapshot's paths instead.
func Watch(ctx context.Context, root string) (*Watcher, error) {
	return nil, &errNoWatch{"the change journal needs Linux inotify"}
}

func (w *Watcher) Fatal() <-chan string                          { return nil }
func (w *Watcher) Watched() int                                  { return 0 }
func (w *Watcher) Since(ctx context.Context, tok Token) *Changes { return &Changes{Why: "unsupported"} }

func peerUID(fd int) (uint32, error) { return 0, errors.New("peer credentials need Linux") }

func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
