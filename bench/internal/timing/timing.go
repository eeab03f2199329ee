// Package timing holds what pipe's benchmark programs share: running a
// command, timing repeated runs and summarising them.
package timing

import (
	"bytes"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// Command runs bin in dir with env and returns its combined output.
func Command(dir string, env []string, bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// Runs times f n times.
func Runs(n int, f func() error) ([]time.Duration, error) {
	var ds []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if err := f(); err != nil {
			return nil, err
		}
		ds = append(ds, time.Since(t0))
	}
	return ds, nil
}

// Median is the middle duration.
func Median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// Stats prints "median X ms (min–max, N runs)".
func Stats(ds []time.Duration) string {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	return fmt.Sprintf("median %s (%s–%s, %d runs)", ms(Median(ds)), ms(s[0]), ms(s[len(s)-1]), len(ds))
}

// Machine names the cores and kernel the figures come from.
func Machine() string {
	out, _ := exec.Command("nproc").Output()
	kernel, _ := exec.Command("uname", "-r").Output()
	return fmt.Sprintf("%s cores, Linux %s", strings.TrimSpace(string(out)), strings.TrimSpace(string(kernel)))
}
