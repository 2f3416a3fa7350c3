package tracker

import "math"

// noWatermark is the watermark before any source has passed the start-up hold.
const noWatermark = math.MinInt64

// source is one telemetry source — a service instance in one pipeline (its spans and its
// logs are exported separately, each in its own order) — how far its events have got in event
// time, and when (collector time) it was last heard.
type source struct {
	sourceKey
	latest    int64 // latest event time seen, unix ns
	lastHeard int64 // collector time of its last event, unix ns
	links[source]
}

// watermarks follows every source's progress in event time. The watermark is the event time
// up to which every active source is believed complete: the minimum over the sources heard
// within idleTimeout of (latest event time − lateness), never moving back. A source that went
// silent (a crashed service) leaves the minimum after idleTimeout; while no source is active
// the watermark holds (nothing arriving at all is what a blocked pipeline looks like).
type watermarks struct {
	lateness, idleTimeout int64
	maxSources            int

	byKey map[sourceKey]*source
	heard list[source] // least recently heard first
	last  *source      // the previous event's source: batches come from one resource

	start   int64 // collector time of the first call; 0 before it
	current int64
	// lowest is the active source that set current: only its progress can raise it, so the
	// watermark is recomputed (over the active sources) on its events only.
	lowest  *source
	evicted int64
}

func newWatermarks(lateness, idleTimeout int64, maxSources int) watermarks {
	return watermarks{
		lateness: lateness, idleTimeout: idleTimeout, maxSources: maxSources,
		byKey: make(map[sourceKey]*source), current: noWatermark,
		heard: list[source]{at: func(s *source) *links[source] { return &s.links }},
	}
}

type sourceKey struct {
	name string // resource service.name and service.instance.id
	sink uint8  // the pipeline
}

// begin marks the collector time of the first call.
func (w *watermarks) begin(now int64) {
	if w.start == 0 {
		w.start = now
	}
}

// observe records an event of source (name, sink) stamped at (collector time now) and moves
// the watermark on at once when the event is the lowest source's: a verdict then never depends
// on when the next tick comes.
func (w *watermarks) observe(name string, sink uint8, at, now int64) {
	w.begin(now)
	key := sourceKey{name, sink}
	s := w.last
	if s == nil || s.sourceKey != key {
		s = w.byKey[key]
		if s == nil {
			s = w.add(key, at)
		}
		w.last = s
	}
	raised := at > s.latest
	s.latest = max(s.latest, at)
	s.lastHeard = now
	w.heard.moveToBack(s)
	if raised && (w.lowest == s || w.lowest == nil) {
		w.advance(now)
	}
}

func (w *watermarks) add(key sourceKey, at int64) *source {
	if len(w.byKey) >= w.maxSources {
		// The least recently heard source is the one most likely gone for good.
		oldest := w.heard.head
		w.heard.remove(oldest)
		delete(w.byKey, oldest.sourceKey)
		if w.last == oldest {
			w.last = nil
		}
		if w.lowest == oldest {
			w.lowest = nil
		}
		w.evicted++
	}
	s := &source{sourceKey: key, latest: at}
	w.byKey[key] = s
	w.heard.pushBack(s)
	return s
}

// advance recomputes the watermark at collector time now and returns it. Nothing is decided
// by watermark during the first idleTimeout after start: a source whose telemetry lags from
// the start must be heard before the others may move the watermark past its messages.
func (w *watermarks) advance(now int64) int64 {
	w.begin(now)
	if now-w.start < w.idleTimeout {
		return w.current
	}
	low, lowest := int64(math.MaxInt64), (*source)(nil)
	for s := w.heard.tail; s != nil && now-s.lastHeard <= w.idleTimeout; s = s.prev {
		if v := s.latest - w.lateness; v < low {
			low, lowest = v, s
		}
	}
	w.lowest = lowest
	if lowest != nil && low > w.current {
		w.current = low
	}
	return w.current
}

// heardAll marks every source active at since heard at now.
func (w *watermarks) heardAll(since, now int64) {
	for s := w.heard.tail; s != nil && since-s.lastHeard <= w.idleTimeout; s = s.prev {
		s.lastHeard = now
	}
}

// active counts the sources heard within idleTimeout of now.
func (w *watermarks) active(now int64) int {
	n := 0
	for s := w.heard.tail; s != nil && now-s.lastHeard <= w.idleTimeout; s = s.prev {
		n++
	}
	return n
}
