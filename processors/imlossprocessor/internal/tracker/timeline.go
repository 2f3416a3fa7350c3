package tracker

import (
	"time"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
)

// Timeline is the tracker's view of time: every source's progress in event time (the
// watermark), how long the collector has been up (the max_source_lag cap), and the crash a
// checkpoint was restored after. It is fed every event in arrival order; a sharded tracker
// keeps one for all its shards (see Dispatcher), since a watermark over the sources a shard
// happens to see would pass messages a quieter source still has in flight.
type Timeline struct {
	maxClockSkew, maxSourceLag int64
	wm                         watermarks

	// capFrom is when the max_source_lag cap last started again (see PipelineStalled).
	capFrom int64
	// arrivalLag is watermarks.arrivalLag as of the last Limits: the cap and the gauge share
	// one scan of the sources per tick.
	arrivalLag int64

	// uncertainBefore (event time, unix ns; 0: none) is set by restoring a checkpoint: an
	// event stamped before it may belong to a message whose other events were applied
	// after the checkpoint and lost in the crash (see Kind).
	uncertainBefore int64
}

// NewTimeline returns the timeline of a tracker with cfg.
func NewTimeline(cfg Config) *Timeline {
	tl := newTimeline(cfg)
	return &tl
}

func newTimeline(cfg Config) Timeline {
	return Timeline{
		maxClockSkew: int64(cfg.MaxClockSkew),
		maxSourceLag: int64(cfg.MaxSourceLag),
		wm:           newWatermarks(int64(cfg.AllowedLateness), int64(cfg.SourceIdleTimeout), int64(cfg.MaxSourceLag), max(cfg.MaxSources, 1)),
	}
}

// Stamp is what the timeline says about one event: when it happened (event time), the
// watermark once it was observed, and whether it may predate a crash.
type Stamp struct {
	At, Watermark int64
	BeforeCrash   bool
}

// FeedsSeq reports whether ev, so stamped, feeds its conversation's seq gap detection: a
// persist with a seq. A seq persisted before a crash may have been seen and lost with it: the
// seq baseline restarts after the crash instead of reporting it as missing.
func (st Stamp) FeedsSeq(ev *event.Event) bool {
	return ev.Stage == imsemconv.StagePersist && ev.HasSeq && ev.ConversationID != "" && !st.BeforeCrash
}

// Stamp observes ev, arrived at collector time now, and stamps it. Timestamps from the
// collector's future are pulled back to now + MaxClockSkew first: a service whose clock runs
// ahead must not push the watermark past messages still in flight.
func (tl *Timeline) Stamp(now int64, ev *event.Event) Stamp {
	limit := now + tl.maxClockSkew
	ev.Start = min(ev.Start, limit)
	ev.End = min(ev.End, limit)
	at := eventTime(ev, now)
	tl.wm.observe(ev.Source, ev.Sink, at, now)
	return Stamp{At: at, Watermark: tl.wm.current, BeforeCrash: tl.beforeCrash(now, ev)}
}

// eventTime is the time an event happened: a span's end (a send's start is its send time,
// kept separately), a log record's timestamp, or — without any — its arrival.
func eventTime(ev *event.Event, now int64) int64 {
	switch {
	case ev.End > 0:
		return ev.End
	case ev.Start > 0:
		return ev.Start
	}
	return now
}

// Limits recomputes the watermark w at collector time now, and the deadline up to which
// verdicts are due: w, or the max_source_lag cap when it is further on.
func (tl *Timeline) Limits(now int64) (w, limit int64) {
	w = tl.wm.advance(now)
	tl.arrivalLag = tl.wm.arrivalLag(now)
	return w, max(w, tl.forcedLimit(now))
}

// forcedLimit is the deadline up to which verdicts go ahead without the watermark:
// MaxSourceLag behind the freshest telemetry, the collector's clock less the least arrival lag
// of the sources heard lately (see watermarks.arrivalLag), once the collector has
// been up MaxSourceLag (so a restart gives the services' backlog that long to arrive). The cap
// is measured from the freshest source rather than from the collector's clock so that
// telemetry late as a whole (a backlog replayed after an outage, a collector behind under
// load) is still judged on event time: only a source lagging the others by more than
// MaxSourceLag has verdicts forced past it.
func (tl *Timeline) forcedLimit(now int64) int64 {
	if now-max(tl.wm.start, tl.capFrom) < tl.maxSourceLag {
		return noWatermark
	}
	return now - tl.arrivalLag - tl.maxSourceLag
}

// PipelineStalled says that the pipeline has been blocked downstream since collector time
// since (at least until now): the receivers are back-pressured, so the sources' silence is
// the collector's doing. The sources active when it began count as heard now, and the
// max_source_lag cap starts again, as after a restart, so the backlog has that long to arrive.
func (tl *Timeline) PipelineStalled(since, now int64) {
	tl.wm.heardAll(since, now)
	tl.capFrom = now
}

// Watermark is the event time (unix ns) up to which verdicts have been made on complete
// telemetry, as of the last Tick; noWatermark (math.MinInt64) before the first.
func (tl *Timeline) Watermark() int64 { return tl.wm.current }

// ArrivalLag is how late the freshest telemetry arrived as of the last Limits (see
// watermarks.arrivalLag): max_source_lag counts from it.
func (tl *Timeline) ArrivalLag() int64 { return tl.arrivalLag }

// ActiveSources counts the sources that hold the watermark at now (see watermarks).
func (tl *Timeline) ActiveSources(now int64) int { return tl.wm.active(now) }

// TakeEvictedSources returns and resets the count of sources evicted at MaxSources.
func (tl *Timeline) TakeEvictedSources() int64 {
	n := tl.wm.evicted
	tl.wm.evicted = 0
	return n
}

// CrashClockSkew is how far after the restart an event may be stamped and still be counted
// as possibly older than the crash: services' clocks are not the collector's.
const CrashClockSkew = time.Second

// DistrustEventsBefore declares that events stamped before at (plus CrashClockSkew) may
// belong to messages whose other events were applied before a crash and lost with it
// (Restore of a checkpoint calls it). Such messages are never judged lost on missing
// evidence, and such persists do not feed seq gap detection.
func (tl *Timeline) DistrustEventsBefore(at int64) {
	tl.uncertainBefore = max(tl.uncertainBefore, at+int64(CrashClockSkew))
}

// beforeCrash reports whether ev may predate a restart whose state was not saved exactly.
func (tl *Timeline) beforeCrash(now int64, ev *event.Event) bool {
	if tl.uncertainBefore == 0 {
		return false
	}
	at := ev.Start
	if at <= 0 {
		at = ev.End
	}
	if at <= 0 {
		at = now
	}
	return at < tl.uncertainBefore
}
