package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// TasksetPath finds taskset (util-linux), which pins a collector to CPUs (Spec.CPUs). The
// error says how to get it; callers that can run unpinned report it rather than skip quietly.
func TasksetPath() (string, error) {
	p, err := exec.LookPath("taskset")
	if err != nil {
		return "", fmt.Errorf("taskset not found (%w): install util-linux (Debian: apt-get install util-linux; it is essential there, so present on any Debian install)", err)
	}
	return p, nil
}

// pinnedCommand is the command that runs bin with args on the CPUs of list: taskset sets its
// own affinity and execs bin in place, so the collector keeps taskset's pid.
func pinnedCommand(taskset, list, bin string, args []string) (string, []string) {
	return taskset, append([]string{"-c", list, bin}, args...)
}

// ParseCPUList reads a Linux CPU list ("0-2,5", as in Cpus_allowed_list and taskset -c) into
// sorted, distinct CPU numbers.
func ParseCPUList(list string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(strings.TrimSpace(list), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("CPU list %q: %q is not a CPU number", list, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("CPU list %q: bad range %q", list, part)
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// FormatCPUList writes CPU numbers as taskset -c takes them: "0,1,3".
func FormatCPUList(cpus []int) string {
	parts := make([]string, len(cpus))
	for i, c := range cpus {
		parts[i] = strconv.Itoa(c)
	}
	return strings.Join(parts, ",")
}

// FirstCPUs picks the first n of the allowed CPUs, as a taskset list.
func FirstCPUs(allowed []int, n int) (string, error) {
	if n <= 0 {
		return "", errors.New("at least one CPU is needed")
	}
	if len(allowed) < n {
		return "", fmt.Errorf("%d CPUs wanted, this process may use %d (%s)", n, len(allowed), FormatCPUList(allowed))
	}
	return FormatCPUList(allowed[:n]), nil
}

// AllowedCPUs are the CPUs this process may run on.
func AllowedCPUs() ([]int, error) {
	list, err := Affinity(int32(os.Getpid()))
	if err != nil {
		return nil, err
	}
	return ParseCPUList(list)
}

// Affinity reads a process's Cpus_allowed_list from /proc (Linux).
func Affinity(pid int32) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/status")
	if err != nil {
		return "", fmt.Errorf("reading the CPU affinity: %w", err)
	}
	return cpusAllowed(string(b))
}

func cpusAllowed(status string) (string, error) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", errors.New("no Cpus_allowed_list in the process status")
}
