package harness

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// ProfileFunc is one function of a profile summary, as a line of `go tool pprof -top`: flat
// is what the function itself spent (it is the leaf of the stack), cum what it and everything
// it called spent; percentages are of the profile's total.
type ProfileFunc struct {
	Function    string  `json:"function"`
	Flat        int64   `json:"flat"`
	FlatPercent float64 `json:"flat_percent"`
	Cum         int64   `json:"cum"`
	CumPercent  float64 `json:"cum_percent"`
}

// ProfileSummary is the top of one sample type of a profile.
type ProfileSummary struct {
	// SampleType and Unit name the value summarised, e.g. cpu/nanoseconds, alloc_space/bytes.
	SampleType string `json:"sample_type"`
	Unit       string `json:"unit"`
	Total      int64  `json:"total"`
	Samples    int    `json:"samples"`
	// Duration is what the profile covers, when it says.
	Duration string `json:"duration,omitempty"`
	// ByFlat is sorted as `pprof -top`, ByCum as `pprof -top -cum`.
	ByFlat []ProfileFunc `json:"top_flat"`
	ByCum  []ProfileFunc `json:"top_cum"`
	// Focus is, per substring asked for, the share of the samples with a function whose name
	// contains it anywhere in the stack (`pprof -focus`), e.g. one component's package.
	Focus []ProfileShare `json:"focus,omitempty"`
}

// ProfileShare is the part of a profile under the functions matching a substring.
type ProfileShare struct {
	Match   string  `json:"match"`
	Value   int64   `json:"value"`
	Percent float64 `json:"percent"`
}

// maxProfile bounds a fetched profile; a collector's CPU profile is a few hundred KiB.
const maxProfile = 64 << 20

// FetchProfile reads a pprof profile from url (the pprof extension's /debug/pprof/...).
func FetchProfile(ctx context.Context, url string) (*profile.Profile, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	p, err := profile.Parse(io.LimitReader(resp.Body, maxProfile))
	if err != nil {
		return nil, fmt.Errorf("parsing the profile from %s: %w", url, err)
	}
	return p, nil
}

// SummarizeProfile gives the n functions of p with the most flat and the most cum of the
// sample type named sampleType, and the share under each focus substring. Inlined functions
// count as functions of their own, as in pprof.
func SummarizeProfile(p *profile.Profile, sampleType string, n int, focus ...string) (ProfileSummary, error) {
	idx := slices.IndexFunc(p.SampleType, func(v *profile.ValueType) bool { return v.Type == sampleType })
	if idx < 0 {
		var have []string
		for _, v := range p.SampleType {
			have = append(have, v.Type)
		}
		return ProfileSummary{}, fmt.Errorf("the profile has no %q samples (has %s)", sampleType, strings.Join(have, ", "))
	}
	s := ProfileSummary{SampleType: sampleType, Unit: p.SampleType[idx].Unit, Samples: len(p.Sample)}
	if p.DurationNanos > 0 {
		s.Duration = time.Duration(p.DurationNanos).Round(time.Millisecond).String()
	}
	funcs := map[string]*ProfileFunc{}
	get := func(name string) *ProfileFunc {
		f := funcs[name]
		if f == nil {
			f = &ProfileFunc{Function: name}
			funcs[name] = f
		}
		return f
	}
	shares := make([]ProfileShare, len(focus))
	for i, f := range focus {
		shares[i].Match = f
	}
	for _, smp := range p.Sample {
		v := smp.Value[idx]
		if v == 0 {
			continue
		}
		s.Total += v
		names := stackNames(smp)
		for i := range shares {
			if slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, shares[i].Match) }) {
				shares[i].Value += v
			}
		}
		seen := map[string]bool{}
		for i, name := range names {
			if i == 0 {
				get(name).Flat += v
			}
			if !seen[name] {
				seen[name] = true
				get(name).Cum += v
			}
		}
	}
	for i := range shares {
		if s.Total != 0 {
			shares[i].Percent = 100 * float64(shares[i].Value) / float64(s.Total)
		}
	}
	if len(shares) > 0 {
		s.Focus = shares
	}
	all := make([]ProfileFunc, 0, len(funcs))
	for _, f := range funcs {
		if s.Total != 0 {
			f.FlatPercent = 100 * float64(f.Flat) / float64(s.Total)
			f.CumPercent = 100 * float64(f.Cum) / float64(s.Total)
		}
		all = append(all, *f)
	}
	top := func(key func(ProfileFunc) int64) []ProfileFunc {
		sorted := slices.Clone(all)
		slices.SortFunc(sorted, func(a, b ProfileFunc) int {
			return cmp.Or(cmp.Compare(key(b), key(a)), cmp.Compare(a.Function, b.Function))
		})
		return sorted[:min(n, len(sorted))]
	}
	s.ByFlat = top(func(f ProfileFunc) int64 { return f.Flat })
	s.ByCum = top(func(f ProfileFunc) int64 { return f.Cum })
	return s, nil
}

// stackNames lists the functions of a sample from the leaf outwards; within a location the
// inlined functions come first, as the profile stores them. A location without symbols is
// named by its address.
func stackNames(s *profile.Sample) []string {
	var out []string
	for _, loc := range s.Location {
		if len(loc.Line) == 0 {
			out = append(out, fmt.Sprintf("0x%x", loc.Address))
			continue
		}
		for _, l := range loc.Line {
			name := "?"
			if l.Function != nil {
				name = l.Function.Name
			}
			out = append(out, name)
		}
	}
	return out
}
