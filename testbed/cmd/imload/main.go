// Command imload generates IM message lifecycle telemetry, with injected faults, and sends it
// over OTLP to a collector on this machine. Run it against any collector (imcol, or upstream
// with your own pipeline); -truth writes the ground truth of every message as JSON lines so
// outcome records can be checked afterwards.
//
//	go run ./testbed/cmd/imload -endpoint 127.0.0.1:4317 -rate 500 -duration 30s -faults all=0.01
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/imcol/imcol/testbed/faults"
	"github.com/imcol/imcol/testbed/sender"
	"github.com/imcol/imcol/testbed/workload"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "imload:", err)
		os.Exit(1)
	}
}

// maxDuration bounds a run: the generator is for tests and benchmarks, not a daemon.
const maxDuration = 24 * time.Hour

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("imload", flag.ContinueOnError)
	wc := workload.DefaultConfig()
	var (
		endpoint = fs.String("endpoint", "127.0.0.1:4317", "collector OTLP endpoint (host:port on this machine)")
		protocol = fs.String("protocol", "grpc", "grpc or http")
		signals  = fs.String("signals", "traces", "traces, logs, mixed, or service=signal list (gateway, msg, transfer, push)")
		duration = fs.Duration("duration", 10*time.Second, "how long to generate messages (ignored when -messages is set)")
		messages = fs.Int64("messages", 0, "number of messages (overrides -duration)")
		faultArg = fs.String("faults", "", "fault probabilities: class=p,... or all=p (classes: see README)")
		workers  = fs.Int("workers", 1, "concurrent export requests (1 keeps arrival order = emission order)")
		batch    = fs.Int("batch", 512, "items per export request")
		retry    = fs.Duration("retry-timeout", 30*time.Second, "give up on a request after retrying this long")
		truth    = fs.String("truth", "", "write the ground truth of every message to this file (JSON lines)")
		progress = fs.Duration("progress", 5*time.Second, "print progress this often (0: never)")
		ackT     = fs.Duration("ack-timeout", 30*time.Second, "the collector's im_loss ack_timeout (places the faults)")
		offT     = fs.Duration("offline-timeout", 10*time.Minute, "the collector's im_loss offline_timeout")
		reorder  = fs.Duration("reorder-window", 10*time.Second, "the collector's im_loss reorder_window")
		tick     = fs.Duration("tick-interval", time.Second, "the collector's im_loss tick_interval")
		margin   = fs.Duration("margin", 2*time.Second, "transport allowance separating within from beyond a timeout")
		late     = fs.Duration("allowed-lateness", 2*time.Second, "the collector's im_loss allowed_lateness (disorder within one service it tolerates)")
		idle     = fs.Duration("source-idle-timeout", time.Minute, "the collector's im_loss source_idle_timeout")
		maxLag   = fs.Duration("max-source-lag", 2*time.Minute, "the collector's im_loss max_source_lag")
		lagArg   = fs.String("lag", "", "export lag per service: service=delay[/ramp],... or all=delay (e.g. im-gateway=10s); the ramp defaults to the delay")
	)
	fs.Uint64Var(&wc.Seed, "seed", wc.Seed, "seed of the whole workload")
	fs.Float64Var(&wc.Rate, "rate", wc.Rate, "messages per second")
	fs.IntVar(&wc.Users, "users", wc.Users, "users")
	fs.IntVar(&wc.MinDevices, "min-devices", wc.MinDevices, "devices per user, at least")
	fs.IntVar(&wc.MaxDevices, "max-devices", wc.MaxDevices, "devices per user, at most")
	fs.IntVar(&wc.SingleConversations, "singles", wc.SingleConversations, "single (two-member) conversations")
	fs.IntVar(&wc.GroupConversations, "groups", wc.GroupConversations, "group conversations")
	fs.IntVar(&wc.MinGroupSize, "min-group", wc.MinGroupSize, "members per group, at least")
	fs.IntVar(&wc.MaxGroupSize, "max-group", wc.MaxGroupSize, "members per group, at most")
	fs.Float64Var(&wc.GroupShare, "group-share", wc.GroupShare, "share of messages sent to groups")
	fs.Float64Var(&wc.OfflineShare, "offline-share", wc.OfflineShare, "probability that a recipient device is offline")
	fs.DurationVar(&wc.OfflineReconnectMin, "reconnect-min", 0, "offline devices reconnect after at least this (default: just after -ack-timeout)")
	fs.DurationVar(&wc.OfflineReconnectMax, "reconnect-max", 0, "offline devices reconnect after at most this (default: twice -ack-timeout plus -margin, and well before -offline-timeout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	t := faults.Timeouts{AckTimeout: *ackT, OfflineTimeout: *offT, ReorderWindow: *reorder, TickInterval: *tick, Margin: *margin,
		AllowedLateness: *late, SourceIdleTimeout: *idle, MaxSourceLag: *maxLag}
	lags, err := workload.ParseLags(*lagArg)
	if err != nil {
		return err
	}
	if wc.OfflineReconnectMin == 0 {
		wc.OfflineReconnectMin = t.AckTimeout + t.Margin + t.TickInterval
	}
	if wc.OfflineReconnectMax == 0 {
		// Soon after the ack timeout, so the offline queue is exercised without keeping the
		// run alive for most of a (default ten-minute) offline timeout.
		wc.OfflineReconnectMax = max(wc.OfflineReconnectMin, min(t.OfflineTimeout-2*t.Margin, 2*(t.AckTimeout+t.Margin)))
	}
	wc.Messages = *messages
	if wc.Messages == 0 {
		if *duration <= 0 || *duration > maxDuration {
			return fmt.Errorf("-duration must be in (0, %s], got %s", maxDuration, *duration)
		}
		wc.Messages = int64(wc.Rate * duration.Seconds())
	}
	if float64(wc.Messages)/wc.Rate > maxDuration.Seconds() {
		return fmt.Errorf("%d messages at %v/s would run longer than %s", wc.Messages, wc.Rate, maxDuration)
	}
	probs, err := faults.ParseProbabilities(*faultArg)
	if err != nil {
		return err
	}
	sig, err := sender.ParseSignals(*signals)
	if err != nil {
		return err
	}
	gen, err := workload.NewGenerator(wc)
	if err != nil {
		return err
	}
	book := faults.NewBook()
	planner, err := faults.NewPlanner(gen, faults.Config{Probability: probs, Timeouts: t, Lags: lags}, book)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := sender.Start(ctx, sender.Config{
		Endpoint: *endpoint, Protocol: *protocol, Signals: sig,
		Workers: *workers, MaxBatch: *batch, RetryTimeout: *retry, Lags: lags,
	}, planner)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "imload: %d messages at %.0f/s to %s (%s, %s, lags %s), seed %d; delayed events (offline devices, late acks, lagged services) follow for up to %s after the last message\n",
		wc.Messages, wc.Rate, *endpoint, *protocol, sig, lags, wc.Seed,
		max(wc.OfflineReconnectMax+time.Second, t.AckTimeout+t.AllowedLateness+t.TickInterval+t.Margin+time.Second)+2*lags.Max())
	if *progress > 0 {
		ticker := time.NewTicker(*progress)
	loop:
		for {
			select {
			case <-r.Done():
				break loop
			case <-ticker.C:
				s := r.Stats()
				sent, acc, _, failed := s.Items()
				fmt.Fprintf(out, "imload: %s: %d messages, %d items sent, %d accepted, %d failed, %d retries\n",
					s.Elapsed.Round(time.Second), s.Messages, sent, acc, failed, s.Retries)
			}
		}
		ticker.Stop()
	}
	stats, runErr := r.Wait()
	sent, acc, rej, failed := stats.Items()
	fmt.Fprintf(out, "imload: done in %s: %d messages, %d items sent (%d spans, %d log records), %d accepted, %d rejected, %d failed, %d retries, max lag %s\n",
		stats.Elapsed.Round(time.Millisecond), stats.Messages, sent, stats.Sent[sender.SignalTraces], stats.Sent[sender.SignalLogs],
		acc, rej, failed, stats.Retries, stats.MaxLag.Round(time.Millisecond))
	counts := book.Counts()
	for _, c := range append([]faults.Class{faults.ClassNone, faults.ClassOffline}, faults.Faults...) {
		if counts[c] > 0 {
			fmt.Fprintf(out, "imload:   %-16s %d\n", c, counts[c])
		}
	}
	if *truth != "" {
		if err := writeTruth(*truth, book, r.StartTime()); err != nil {
			return errors.Join(runErr, err)
		}
	}
	if runErr != nil {
		return runErr
	}
	if failed > 0 || rej > 0 {
		return fmt.Errorf("%d items failed and %d were rejected (last error: %s)", failed, rej, stats.LastError)
	}
	return nil
}

// truthLine is one message of the -truth file.
type truthLine struct {
	MessageID      string   `json:"message_id"`
	ConversationID string   `json:"conversation_id"`
	Seq            int64    `json:"seq,omitempty"`
	Class          string   `json:"class"`
	Expect         []string `json:"expect"`
	FirstSent      string   `json:"first_sent"`
	// Deadline is when a lost verdict is due in event time (send time + ack_timeout, ...).
	Deadline string `json:"deadline,omitempty"`
}

func writeTruth(path string, book *faults.Book, start time.Time) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, t := range book.All() {
		l := truthLine{MessageID: t.MessageID, ConversationID: t.Conversation.ID, Seq: t.Seq, Class: string(t.Class),
			FirstSent: start.Add(t.FirstDue).UTC().Format(time.RFC3339Nano)}
		if t.Deadline > 0 {
			l.Deadline = start.Add(t.Deadline).UTC().Format(time.RFC3339Nano)
		}
		for _, lb := range t.Labels {
			l.Expect = append(l.Expect, lb.String())
		}
		if err := enc.Encode(l); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
