package tracker

import "math"

// noWatermark is the watermark before any source has passed the start-up hold.
const noWatermark = math.MinInt64

// source is one telemetry source — a service instance in one pipeline (its spans and its
// logs are exported separately, each in its own order) — how far its events have got in event
// time, and when (collector time) it was last heard.
type source struct {
	sourceKey
	latest int64 // latest event time seen, unix ns
	// lastHeard is when (collector time) its silence started counting: its last event, or
	// the resumption of its pipeline after a silence of the whole pipeline.
	lastHeard int64
	heardAt   int64 // collector time of its last event, unix ns
	links[source]
}

// pipeline is the sources of one sink, least recently heard first, and the collector time of
// the sink's last event from any of them.
type pipeline struct {
	heard     list[source]
	lastEvent int64 // 0: none yet
}

// watermarks follows every source's progress in event time. The watermark is the event time
// up to which every active source is believed complete: the minimum over the active sources
// of (latest event time − lateness), never moving back.
//
// A source is active while heard within idleTimeout, and after that for as long as its
// pipeline carried nothing from any other source either (at most maxSilence): a crashed
// service falls silent while its pipeline goes on carrying the others, whereas a pipeline
// that falls silent altogether is the path — a gateway queue retrying, this collector
// restarting — and its sources' telemetry is still on the way. When a pipeline resumes after
// a silence (resumeGap), the sources active when it fell silent get idleTimeout again from
// the resumption: an upstream collector's queues resume one by one, each with its own retry
// backoff, and the watermark must not pass what is still queued in the later ones.
// While no source is active the watermark holds (nothing arriving at all is what a blocked
// pipeline looks like).
type watermarks struct {
	lateness, idleTimeout, maxSilence int64
	maxSources                        int

	byKey map[sourceKey]*source
	sinks []pipeline // by sink index
	last  *source    // the previous event's source: batches come from one resource

	start   int64 // collector time of the first call; 0 before it
	current int64
	// lowest is the active source that set current: only its progress can raise it, so the
	// watermark is recomputed (over the active sources) on its events only.
	lowest  *source
	evicted int64
	scratch []*source
}

func newWatermarks(lateness, idleTimeout, maxSilence int64, maxSources int) watermarks {
	return watermarks{
		lateness: lateness, idleTimeout: idleTimeout, maxSilence: maxSilence, maxSources: maxSources,
		byKey: make(map[sourceKey]*source), current: noWatermark,
	}
}

type sourceKey struct {
	name string // resource service.name and service.instance.id
	sink uint8  // the pipeline
}

// resumeGap is the silence of a whole pipeline after which its sources' idle time starts
// again at its resumption.
func (w *watermarks) resumeGap() int64 { return w.idleTimeout / 2 }

// begin marks the collector time of the first call.
func (w *watermarks) begin(now int64) {
	if w.start == 0 {
		w.start = now
	}
}

func (w *watermarks) pipeline(sink uint8) *pipeline {
	for int(sink) >= len(w.sinks) {
		w.sinks = append(w.sinks, pipeline{heard: list[source]{at: func(s *source) *links[source] { return &s.links }}})
	}
	return &w.sinks[sink]
}

// observe records an event of source (name, sink) stamped at (collector time now) and moves
// the watermark on at once when the event is the lowest source's: a verdict then never depends
// on when the next tick comes.
func (w *watermarks) observe(name string, sink uint8, at, now int64) {
	w.begin(now)
	key := sourceKey{name, sink}
	p := w.pipeline(sink)
	if p.lastEvent != 0 && now-p.lastEvent > w.resumeGap() {
		w.resume(p, p.lastEvent, now, true)
	}
	p.lastEvent = max(p.lastEvent, now)
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
	s.lastHeard, s.heardAt = now, now
	p.heard.moveToBack(s)
	if raised && (w.lowest == s || w.lowest == nil) {
		w.advance(now)
	}
}

func (w *watermarks) add(key sourceKey, at int64) *source {
	if len(w.byKey) >= w.maxSources {
		w.evictOldest()
	}
	s := &source{sourceKey: key, latest: at}
	w.byKey[key] = s
	w.pipeline(key.sink).heard.pushBack(s)
	return s
}

// evictOldest drops the least recently heard source, the one most likely gone for good.
func (w *watermarks) evictOldest() {
	var oldest *source
	for i := range w.sinks {
		if h := w.sinks[i].heard.head; h != nil && (oldest == nil || h.lastHeard < oldest.lastHeard) {
			oldest = h
		}
	}
	if oldest == nil {
		return
	}
	w.sinks[oldest.sink].heard.remove(oldest)
	delete(w.byKey, oldest.sourceKey)
	if w.last == oldest {
		w.last = nil
	}
	if w.lowest == oldest {
		w.lowest = nil
	}
	w.evicted++
}

// holds says whether s, of pipeline p, is active at collector time now.
func (w *watermarks) holds(p *pipeline, s *source, now int64) bool {
	if now-s.lastHeard <= w.idleTimeout {
		return true
	}
	return p.lastEvent-s.lastHeard <= w.idleTimeout && now-p.lastEvent <= w.maxSilence
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
	for i := range w.sinks {
		p := &w.sinks[i]
		// holds is monotone in lastHeard, which the list is ordered by.
		for s := p.heard.tail; s != nil && w.holds(p, s, now); s = s.prev {
			if v := s.latest - w.lateness; v < low {
				low, lowest = v, s
			}
		}
	}
	w.lowest = lowest
	if lowest != nil && low > w.current {
		w.current = low
	}
	return w.current
}

// resume restarts at now the idle time of p's sources that were active at since. capped
// skips the sources not heard for maxSilence, so that a pipeline that is silent most of the
// time does not keep a crashed service active for ever.
func (w *watermarks) resume(p *pipeline, since, now int64, capped bool) {
	w.scratch = w.scratch[:0]
	for s := p.heard.tail; s != nil && w.holds(p, s, since); s = s.prev {
		if !capped || now-s.heardAt <= w.maxSilence {
			w.scratch = append(w.scratch, s)
		}
	}
	// scratch is most recently heard first: moving the others to the back before it keeps
	// the list ordered.
	for i := len(w.scratch) - 1; i >= 0; i-- {
		s := w.scratch[i]
		s.lastHeard = now
		p.heard.moveToBack(s)
	}
	clear(w.scratch)
}

// heardAll marks every source active at since heard at now.
func (w *watermarks) heardAll(since, now int64) {
	for i := range w.sinks {
		w.resume(&w.sinks[i], since, now, false)
	}
}

// arrivalLag is how far behind the collector's clock the freshest telemetry arrives at now:
// the least (arrival − latest event time) at their last events of the sources heard within
// maxSilence (max_source_lag) or idleTimeout, whichever is longer, never negative; 0 when none
// was. A collector
// behind under load, or a backlog replayed after an outage, delays every source alike; a
// lagging or stuck source delays only its own. A source silent for longer no longer speaks
// for it: whatever it sent has arrived.
func (w *watermarks) arrivalLag(now int64) int64 {
	window := max(w.idleTimeout, w.maxSilence)
	lag := int64(math.MaxInt64)
	for _, s := range w.byKey {
		if now-s.heardAt <= window {
			lag = min(lag, s.heardAt-s.latest)
		}
	}
	if lag == math.MaxInt64 {
		return 0
	}
	return max(lag, 0)
}

// active counts the sources active at now.
func (w *watermarks) active(now int64) int {
	n := 0
	for i := range w.sinks {
		p := &w.sinks[i]
		for s := p.heard.tail; s != nil && w.holds(p, s, now); s = s.prev {
			n++
		}
	}
	return n
}
