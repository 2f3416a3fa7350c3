package harness

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Session lets a command (imbench) run the same scenario code as the Go tests: it implements
// testing.TB with the semantics the scenarios and internal/testcollector rely on: Fatal ends
// the scenario's goroutine, Cleanup functions run last-in first-out, TempDir is removed at
// the end. The embedded testing.TB is nil and only satisfies the interface's unexported
// method; every exported method is implemented here.
type Session struct {
	testing.TB

	name string
	out  io.Writer
	ctx  context.Context

	mu       sync.Mutex
	failed   bool
	skipped  bool
	cleanups []func()
	dirs     []string
	msgs     []string
}

// RunSession runs fn as a scenario named name, logging to out, and returns an error when it
// failed (with every message it logged as an error).
func RunSession(ctx context.Context, name string, out io.Writer, fn func(tb testing.TB)) error {
	s := &Session{name: name, out: out, ctx: ctx}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer s.runCleanups()
		fn(s)
	}()
	<-done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed {
		return fmt.Errorf("%s failed:\n%s", name, strings.Join(s.msgs, "\n"))
	}
	return nil
}

func (s *Session) runCleanups() {
	for {
		s.mu.Lock()
		n := len(s.cleanups)
		if n == 0 {
			dirs := s.dirs
			s.dirs = nil
			s.mu.Unlock()
			for _, d := range dirs {
				_ = os.RemoveAll(d)
			}
			return
		}
		fn := s.cleanups[n-1]
		s.cleanups = s.cleanups[:n-1]
		s.mu.Unlock()
		func() {
			// A Fatal inside a cleanup ends only that cleanup, as in package testing.
			done := make(chan struct{})
			go func() {
				defer close(done)
				fn()
			}()
			<-done
		}()
	}
}

func (s *Session) log(level, msg string) {
	fmt.Fprintf(s.out, "%s: %s%s\n", s.name, level, msg)
}

// ArtifactDir returns a directory kept until the end of the session.
func (s *Session) ArtifactDir() string { return s.TempDir() }

// Attr logs a key/value pair.
func (s *Session) Attr(key, value string) { s.log("", key+"="+value) }

// Cleanup registers fn to run when the scenario ends.
func (s *Session) Cleanup(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, fn)
}

// Error logs and marks the session failed.
func (s *Session) Error(args ...any) { s.fail(fmt.Sprintln(args...)) }

// Errorf logs and marks the session failed.
func (s *Session) Errorf(format string, args ...any) { s.fail(fmt.Sprintf(format, args...)) }

func (s *Session) fail(msg string) {
	msg = strings.TrimSuffix(msg, "\n")
	s.mu.Lock()
	s.failed = true
	s.msgs = append(s.msgs, msg)
	s.mu.Unlock()
	s.log("ERROR ", msg)
}

// Fail marks the session failed.
func (s *Session) Fail() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed = true
}

// FailNow marks the session failed and ends the calling goroutine.
func (s *Session) FailNow() {
	s.Fail()
	runtime.Goexit()
}

// Failed reports whether the session failed.
func (s *Session) Failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// Fatal is Error then FailNow.
func (s *Session) Fatal(args ...any) {
	s.Error(args...)
	runtime.Goexit()
}

// Fatalf is Errorf then FailNow.
func (s *Session) Fatalf(format string, args ...any) {
	s.Errorf(format, args...)
	runtime.Goexit()
}

// Helper does nothing: there are no test frames to hide.
func (s *Session) Helper() {}

// Log writes a message.
func (s *Session) Log(args ...any) { s.log("", strings.TrimSuffix(fmt.Sprintln(args...), "\n")) }

// Logf writes a message.
func (s *Session) Logf(format string, args ...any) { s.log("", fmt.Sprintf(format, args...)) }

// Name is the scenario name.
func (s *Session) Name() string { return s.name }

// Setenv sets an environment variable and restores it at the end.
func (s *Session) Setenv(key, value string) {
	prev, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		s.Fatalf("setenv %s: %v", key, err)
	}
	s.Cleanup(func() {
		if had {
			_ = os.Setenv(key, prev)
		} else {
			_ = os.Unsetenv(key)
		}
	})
}

// Chdir changes the working directory and restores it at the end.
func (s *Session) Chdir(dir string) {
	prev, err := os.Getwd()
	if err != nil {
		s.Fatalf("chdir: %v", err)
	}
	if err := os.Chdir(dir); err != nil {
		s.Fatalf("chdir %s: %v", dir, err)
	}
	s.Cleanup(func() { _ = os.Chdir(prev) })
}

// Skip logs and ends the scenario without failing it.
func (s *Session) Skip(args ...any) {
	s.Log(args...)
	s.SkipNow()
}

// SkipNow ends the scenario without failing it.
func (s *Session) SkipNow() {
	s.mu.Lock()
	s.skipped = true
	s.mu.Unlock()
	runtime.Goexit()
}

// Skipf logs and ends the scenario without failing it.
func (s *Session) Skipf(format string, args ...any) {
	s.Logf(format, args...)
	s.SkipNow()
}

// Skipped reports whether the scenario was skipped.
func (s *Session) Skipped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.skipped
}

// TempDir returns a new directory removed when the session ends.
func (s *Session) TempDir() string {
	dir, err := os.MkdirTemp("", "imbench-"+sanitize(s.name)+"-")
	if err != nil {
		s.Fatalf("temp dir: %v", err)
	}
	s.mu.Lock()
	s.dirs = append(s.dirs, dir)
	s.mu.Unlock()
	return dir
}

// Context is cancelled when the session's context is.
func (s *Session) Context() context.Context { return s.ctx }

// Output is where the session logs.
func (s *Session) Output() io.Writer { return s.out }
