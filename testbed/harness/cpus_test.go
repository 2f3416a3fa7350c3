package harness

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/testbed/configs"
)

func TestParseCPUList(t *testing.T) {
	for list, want := range map[string][]int{
		"0":          {0},
		"0-1":        {0, 1},
		"0-2,5\n":    {0, 1, 2, 5},
		"3,1,1-2,3":  {1, 2, 3},
		"7\n":        {7},
		"0-0,10-11":  {0, 10, 11},
		"4,0-1,2-3,": nil,
	} {
		got, err := ParseCPUList(list)
		if want == nil {
			assert.Error(t, err, "%q", list)
			continue
		}
		require.NoError(t, err, "%q", list)
		assert.Equal(t, want, got, "%q", list)
	}
	for _, bad := range []string{"", "a", "2-1", "-1", "1-x"} {
		_, err := ParseCPUList(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestFirstCPUs(t *testing.T) {
	got, err := FirstCPUs([]int{2, 3, 5}, 2)
	require.NoError(t, err)
	assert.Equal(t, "2,3", got)
	got, err = FirstCPUs([]int{0, 1}, 1)
	require.NoError(t, err)
	assert.Equal(t, "0", got)
	_, err = FirstCPUs([]int{0, 1}, 3)
	assert.ErrorContains(t, err, "3 CPUs wanted, this process may use 2 (0,1)")
	_, err = FirstCPUs([]int{0}, 0)
	assert.Error(t, err)
}

func TestPinnedCommand(t *testing.T) {
	bin, args := pinnedCommand("/usr/bin/taskset", "0,1", "/repo/bin/imcol", []string{"--config", "/tmp/c.yaml"})
	assert.Equal(t, "/usr/bin/taskset", bin)
	assert.Equal(t, []string{"-c", "0,1", "/repo/bin/imcol", "--config", "/tmp/c.yaml"}, args)
}

func TestCpusAllowed(t *testing.T) {
	got, err := cpusAllowed("Name:\timcol\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\nMems_allowed:\t1\n")
	require.NoError(t, err)
	assert.Equal(t, "0-1", got)
	_, err = cpusAllowed("Name:\timcol\n")
	assert.Error(t, err)
}

// TestCollectorPinnedToOneCPU starts the real collector through taskset on this process's
// first CPU with GOMAXPROCS 1: the child must end up with exactly that CPU, and its pprof
// endpoint (im.yaml) must serve a profile.
func TestCollectorPinnedToOneCPU(t *testing.T) {
	if _, err := TasksetPath(); err != nil {
		t.Skipf("no pinning on this machine: %v", err)
	}
	allowed, err := AllowedCPUs()
	require.NoError(t, err)
	first, err := FirstCPUs(allowed, 1)
	require.NoError(t, err)
	cfg, err := configs.Get("im")
	require.NoError(t, err)
	sink, err := NewSink("127.0.0.1:0", SinkOptions{})
	require.NoError(t, err)
	t.Cleanup(sink.Stop)
	col := StartCollector(t, Spec{Name: "pinned", Config: cfg, Sink: sink.Endpoint(), CPUs: first, GOMAXPROCS: 1})
	assert.Equal(t, first, col.Affinity())
	assert.Equal(t, "1", col.env["GOMAXPROCS"])
	p, err := FetchProfile(t.Context(), col.Endpoints.PprofURL("allocs"))
	require.NoError(t, err)
	s, err := SummarizeProfile(p, "alloc_space", 10)
	require.NoError(t, err)
	assert.Positive(t, s.Total)
	assert.NotEmpty(t, s.ByFlat)
}
