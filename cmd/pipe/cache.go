package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/engine"
)

func cacheCmd(ctx context.Context) *cobra.Command {
	c := &cobra.Command{
		Use:   "cache",
		Short: "inspect and trim the shared cache ($PIPE_CACHE_DIR)",
		Args:  cobra.NoArgs,
	}
	c.AddCommand(cacheInfoCmd(ctx), cacheTrimCmd(ctx))
	return c
}

func cacheInfoCmd(ctx context.Context) *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "show the shared cache's location, size, entries and last trim",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := openCache()
			if err != nil {
				return err
			}
			info, err := c.Stat(ctx)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "directory:     %s\n", info.Dir)
			fmt.Fprintf(w, "size:          %s\n", formatBytes(info.Bytes))
			fmt.Fprintf(w, "action cache:  %d entries\n", info.ActionCount)
			fmt.Fprintf(w, "blobs:         %d\n", info.BlobCount)
			fmt.Fprintf(w, "trees:         %d (Python environments and interpreters)\n", info.TreeCount)
			last := "never"
			if !info.LastTrim.IsZero() {
				last = info.LastTrim.Format(time.RFC3339) + " (" + time.Since(info.LastTrim).Round(time.Minute).String() + " ago)"
			}
			fmt.Fprintf(w, "last trim:     %s\n", last)
			return nil
		},
	}
}

func cacheTrimCmd(ctx context.Context) *cobra.Command {
	var maxAge time.Duration
	var maxSize string
	c := &cobra.Command{
		Use:   "trim",
		Short: "remove cache entries unused for --max-age, then the least recently used beyond --max-size",
		Long: `Remove entries of the shared cache that no build has used for longer than
--max-age (default 7 days, or PIPE_CACHE_MAX_AGE), then, with --max-size, the
least recently used entries until the cache fits. A use is recorded at most
once an hour. Builds running at the same time are safe: one that loses an
entry runs the action again.

pipe also trims by age on its own, at most once a day, at the end of a build.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("max-age") {
				d, err := maxAgeFromEnv()
				if err != nil {
					return err
				}
				maxAge = d
			}
			var size int64
			if maxSize != "" {
				n, err := parseBytes(maxSize)
				if err != nil {
					return engine.Usagef("--max-size %q: %v (write e.g. 500MB or 10GB)", maxSize, err)
				}
				size = n
			}
			c, err := openCache()
			if err != nil {
				return err
			}
			st, err := c.Trim(ctx, cache.TrimOptions{MaxAge: maxAge, MaxSize: size})
			if err != nil {
				return fmt.Errorf("trim %s: %w", c.Dir(), err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "removed %d entries (%s); %s remain in %d entries\n",
				st.RemovedEntries, formatBytes(st.RemovedBytes), formatBytes(st.Bytes), st.ActionCount+st.BlobCount)
			return nil
		},
	}
	c.Flags().DurationVar(&maxAge, "max-age", cache.DefaultMaxAge, "remove entries unused for longer than `D` (e.g. 72h; 0 keeps every age)")
	c.Flags().StringVar(&maxSize, "max-size", "", "then remove the least recently used entries until the cache holds at most `SIZE` (e.g. 10GB)")
	return c
}

// maxAgeFromEnv is PIPE_CACHE_MAX_AGE, else the default.
func maxAgeFromEnv() (time.Duration, error) {
	v := os.Getenv("PIPE_CACHE_MAX_AGE")
	if v == "" {
		return cache.DefaultMaxAge, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, engine.Usagef("PIPE_CACHE_MAX_AGE=%q: want a duration such as 168h", v)
	}
	return d, nil
}

// parseBytes reads 1234, 500KB, 20MB, 10GB, 1TB (powers of 1024; KiB… too).
func parseBytes(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("not a size")
	}
	return int64(f * float64(mult)), nil
}
