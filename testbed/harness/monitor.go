package harness

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/process"
)

// Sample is one reading of a process's resources.
type Sample struct {
	At time.Time
	// CPU is the process's user+system CPU time so far, in seconds.
	CPU float64
	RSS uint64
}

// maxSamples bounds a monitor's memory: a day at one sample per second.
const maxSamples = 86_400

// Monitor samples a process's CPU time and resident memory. Start runs it every interval;
// Record adds one reading, so tests can drive it without waiting.
type Monitor struct {
	read func() (cpu float64, rss uint64, err error)

	mu      sync.Mutex
	samples []Sample
	dropped int
	lastErr error
}

// NewMonitor watches pid.
func NewMonitor(pid int32) (*Monitor, error) {
	p, err := process.NewProcess(pid)
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	return newMonitor(func() (float64, uint64, error) {
		t, err := p.Times()
		if err != nil {
			return 0, 0, err
		}
		mem, err := p.MemoryInfo()
		if err != nil {
			return 0, 0, err
		}
		return t.User + t.System, mem.RSS, nil
	}), nil
}

func newMonitor(read func() (float64, uint64, error)) *Monitor { return &Monitor{read: read} }

// Start samples at once and then every interval until ctx ends.
func (m *Monitor) Start(ctx context.Context, interval time.Duration) {
	go func() {
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			m.Record(time.Now())
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
		}
	}()
}

// Record takes one reading stamped at.
func (m *Monitor) Record(at time.Time) {
	cpu, rss, err := m.read()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		// The process may have exited between two readings; the samples so far stand.
		m.lastErr = err
		return
	}
	if len(m.samples) >= maxSamples {
		m.dropped++
		return
	}
	m.samples = append(m.samples, Sample{At: at, CPU: cpu, RSS: rss})
}

// Samples returns a copy of the readings.
func (m *Monitor) Samples() []Sample {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Sample(nil), m.samples...)
}

// Usage summarises a process's resources over a time range.
type Usage struct {
	Samples int `json:"samples"`
	// CPUSeconds is the CPU time used between the first and last sample of the range.
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUAvg and CPUMax are in percent of one core (200 = two cores busy).
	CPUAvg float64 `json:"cpu_avg_percent"`
	CPUMax float64 `json:"cpu_max_percent"`
	RSSAvg uint64  `json:"rss_avg_bytes"`
	RSSMax uint64  `json:"rss_max_bytes"`
}

// Usage summarises the samples taken in [from, to].
func (m *Monitor) Usage(from, to time.Time) Usage {
	return summarize(m.Samples(), from, to)
}

func summarize(all []Sample, from, to time.Time) Usage {
	var in []Sample
	for _, s := range all {
		if !s.At.Before(from) && !s.At.After(to) {
			in = append(in, s)
		}
	}
	u := Usage{Samples: len(in)}
	if len(in) == 0 {
		return u
	}
	var rssSum float64
	for i, s := range in {
		rssSum += float64(s.RSS)
		u.RSSMax = max(u.RSSMax, s.RSS)
		if i == 0 {
			continue
		}
		if dt := s.At.Sub(in[i-1].At).Seconds(); dt > 0 {
			u.CPUMax = max(u.CPUMax, 100*(s.CPU-in[i-1].CPU)/dt)
		}
	}
	u.RSSAvg = uint64(rssSum / float64(len(in)))
	first, last := in[0], in[len(in)-1]
	u.CPUSeconds = last.CPU - first.CPU
	if dt := last.At.Sub(first.At).Seconds(); dt > 0 {
		u.CPUAvg = 100 * u.CPUSeconds / dt
	}
	return u
}
