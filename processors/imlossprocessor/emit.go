package imlossprocessor // import "github.com/imcol/imcol/processors/imlossprocessor"

import (
	"encoding/binary"
	"hash/fnv"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/tracker"
)

const scopeName = "github.com/imcol/imcol/processors/imlossprocessor"

func (r *lossRuntime) emitLoop() {
	defer close(r.emitDone)
	var next *emitItem
	for {
		item, ok := r.nextEmit(next)
		if !ok {
			return
		}
		if item.detach >= 0 {
			r.sinkAt(item.detach).detached = true
		}
		var outs []*tracker.Outcome
		var bufs [][]tracker.Outcome
		outs, bufs, next = r.gatherOutcomes(item)
		if len(outs) > 0 && !r.aborted() {
			_ = r.watched(func() error { r.emit(outs); return nil })
		}
		// The records hold copies: the outcomes can be reused.
		for _, b := range bufs {
			r.recycleOutcomes(b)
		}
		if item.done != nil {
			close(item.done)
		}
	}
}

// nextEmit is the item set aside by gatherOutcomes, else the next one queued.
func (r *lossRuntime) nextEmit(held *emitItem) (emitItem, bool) {
	if held != nil {
		return *held, true
	}
	item, ok := <-r.emitCh
	return item, ok
}

// maxEmitBatch bounds the outcome records emitted in one call into the next consumers.
const maxEmitBatch = 8192

// gatherOutcomes points at item's outcomes and those of the plain items queued behind it (the
// shards each hand on their own), so the next consumers get one batch instead of one per
// shard. An item that detaches a sink or waits for its emission ends the batch: it is returned
// to be handled next, in order. Pointers, not copies: an outcome is a few hundred bytes.
// bufs are the items' slices, to recycle once emitted.
func (r *lossRuntime) gatherOutcomes(item emitItem) (outs []*tracker.Outcome, bufs [][]tracker.Outcome, next *emitItem) {
	outs = appendPointers(make([]*tracker.Outcome, 0, len(item.outcomes)), item.outcomes)
	bufs = append(bufs, item.outcomes)
	if item.done != nil {
		return outs, bufs, nil
	}
	for len(outs) < maxEmitBatch {
		select {
		case more, ok := <-r.emitCh:
			if !ok {
				return outs, bufs, nil
			}
			if more.detach >= 0 || more.done != nil {
				return outs, bufs, &more
			}
			outs = appendPointers(outs, more.outcomes)
			bufs = append(bufs, more.outcomes)
		default:
			return outs, bufs, nil
		}
	}
	return outs, bufs, nil
}

func appendPointers(dst []*tracker.Outcome, outs []tracker.Outcome) []*tracker.Outcome {
	for i := range outs {
		dst = append(dst, &outs[i])
	}
	return dst
}

func (r *lossRuntime) sinkAt(i int) *sink {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sinks[i]
}

func (r *lossRuntime) sinksSnapshot() []*sink {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*sink(nil), r.sinks...)
}

// emit sends outcomes into the pipelines: every pipeline of each listed signal gets all of
// them; with an empty outcomes.signals each goes back into the pipeline its message came through.
func (r *lossRuntime) emit(outs []*tracker.Outcome) {
	sinks := r.sinksSnapshot()
	if len(r.cfg.Outcomes.Signals) == 0 {
		per := make(map[uint8][]*tracker.Outcome)
		for _, o := range outs {
			per[o.Sink] = append(per[o.Sink], o)
		}
		for idx, list := range per {
			if int(idx) < len(sinks) {
				r.send(sinks[idx], list)
			}
		}
		return
	}
	for _, s := range sinks {
		for _, sig := range r.cfg.Outcomes.Signals {
			if s.signal == sig {
				r.send(s, outs)
			}
		}
	}
}

func (r *lossRuntime) send(s *sink, outs []*tracker.Outcome) {
	if s.detached || len(outs) == 0 {
		return
	}
	now := pcommon.NewTimestampFromTime(r.clock.Now())
	// Cancelled when shutdown's deadline passes, so a blocked next consumer lets go.
	ctx := r.runCtx
	var err error
	switch s.signal {
	case SignalTraces:
		err = s.traces.ConsumeTraces(ctx, r.outcomeTraces(outs, now))
	case SignalLogs:
		err = s.logs.ConsumeLogs(ctx, r.outcomeLogs(outs, now))
	}
	if err != nil {
		// Once per batch, not per record; the outcome metrics have counted them already.
		r.logger.Warn("Failed to emit outcome records", zap.String("signal", string(s.signal)),
			zap.Int("records", len(outs)), zap.Error(err))
	}
}

func (r *lossRuntime) outcomeTraces(outs []*tracker.Outcome, now pcommon.Timestamp) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", r.cfg.Outcomes.ServiceName)
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName(scopeName)
	spans := ss.Spans()
	spans.EnsureCapacity(len(outs))
	for _, o := range outs {
		span := spans.AppendEmpty()
		span.SetName(imsemconv.OutcomeEventName)
		span.SetKind(ptrace.SpanKindInternal)
		span.SetTraceID(outcomeTraceID(o))
		span.SetSpanID(outcomeSpanID(o))
		start, end := timestamps(o, now)
		span.SetStartTimestamp(start)
		span.SetEndTimestamp(end)
		if (o.Outcome == imsemconv.OutcomeLost || o.Outcome == imsemconv.OutcomeLate) && !o.Retracted {
			span.Status().SetCode(ptrace.StatusCodeError)
			span.Status().SetMessage(string(o.Reason))
		}
		putOutcomeAttributes(span.Attributes(), o)
	}
	return td
}

func (r *lossRuntime) outcomeLogs(outs []*tracker.Outcome, now pcommon.Timestamp) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", r.cfg.Outcomes.ServiceName)
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName(scopeName)
	records := sl.LogRecords()
	records.EnsureCapacity(len(outs))
	for _, o := range outs {
		lr := records.AppendEmpty()
		lr.SetEventName(imsemconv.OutcomeEventName)
		_, end := timestamps(o, now)
		lr.SetTimestamp(end)
		lr.SetObservedTimestamp(now)
		lr.SetTraceID(outcomeTraceID(o))
		if o.Outcome == imsemconv.OutcomeLost {
			lr.SetSeverityNumber(plog.SeverityNumberWarn)
			lr.SetSeverityText("WARN")
		} else {
			lr.SetSeverityNumber(plog.SeverityNumberInfo)
			lr.SetSeverityText("INFO")
		}
		putOutcomeAttributes(lr.Attributes(), o)
	}
	return ld
}

// putOutcomeAttributes writes the same attributes on spans and log records, so consumers
// (the SLO connector) can count either. Ids and reasons only, never message content.
func putOutcomeAttributes(m pcommon.Map, o *tracker.Outcome) {
	m.EnsureCapacity(outcomeAttributeCount(o))
	m.PutStr(imsemconv.AttrOutcome, string(o.Outcome))
	if o.MessageID != "" {
		m.PutStr(imsemconv.AttrMessageID, o.MessageID)
	}
	if o.ConversationID != "" {
		m.PutStr(imsemconv.AttrConversationID, o.ConversationID)
	}
	if o.DeviceID != "" {
		m.PutStr(imsemconv.AttrRecipientDevice, o.DeviceID)
	}
	switch o.Outcome {
	case imsemconv.OutcomeDelivered:
		if o.HasLatency {
			m.PutDouble(imsemconv.AttrDeliveryLatency, o.LatencyMs)
		}
	case imsemconv.OutcomeLost, imsemconv.OutcomeUntracked:
		m.PutStr(imsemconv.AttrLossStage, o.Stage.String())
		m.PutStr(imsemconv.AttrLossReason, string(o.Reason))
		if o.LostDevices > 0 {
			m.PutInt(imsemconv.AttrLossDevices, int64(o.LostDevices))
		}
	case imsemconv.OutcomeLate:
		m.PutStr(imsemconv.AttrStage, o.Stage.String())
		m.PutStr(imsemconv.AttrLossStage, o.LossStage.String())
		m.PutStr(imsemconv.AttrLossReason, string(o.Reason))
		if o.Retracted {
			m.PutBool(imsemconv.AttrLossRetracted, true)
		}
	case imsemconv.OutcomeDuplicate:
		m.PutStr(imsemconv.AttrStage, o.Stage.String())
	}
	if o.HasSeq {
		m.PutInt(imsemconv.AttrSeq, o.Seq)
		m.PutInt(imsemconv.AttrSeqGapSize, int64(min(o.GapSize, uint64(1<<63-1))))
		if o.Anomaly {
			m.PutBool(imsemconv.AttrSeqGapAnomaly, true)
		}
	}
}

// outcomeAttributeCount is how many attributes putOutcomeAttributes writes for o, so the map
// is allocated once at its size: twice per outcome (span and log record), and copied on by
// the batch processor.
func outcomeAttributeCount(o *tracker.Outcome) int {
	n := 1 + countIf(o.MessageID != "") + countIf(o.ConversationID != "") + countIf(o.DeviceID != "")
	switch o.Outcome {
	case imsemconv.OutcomeDelivered:
		n += countIf(o.HasLatency)
	case imsemconv.OutcomeLost, imsemconv.OutcomeUntracked:
		n += 2 + countIf(o.LostDevices > 0)
	case imsemconv.OutcomeLate:
		n += 3 + countIf(o.Retracted)
	case imsemconv.OutcomeDuplicate:
		n++
	}
	if o.HasSeq {
		n += 2 + countIf(o.Anomaly)
	}
	return n
}

func countIf(b bool) int {
	if b {
		return 1
	}
	return 0
}

// timestamps gives the outcome span's extent: send (or first sighting) to last ack (or the
// decision), never inverted.
func timestamps(o *tracker.Outcome, now pcommon.Timestamp) (start, end pcommon.Timestamp) {
	start, end = pcommon.Timestamp(max(o.Start, 0)), pcommon.Timestamp(max(o.End, 0))
	if end == 0 {
		end = now
	}
	if start == 0 || start > end {
		start = end
	}
	return start, end
}

// outcomeTraceID keeps the outcome in the message's own trace; without one (log-only
// services, seq gaps) it derives a stable id from the message, so repeated outcomes of the
// same message share a trace.
func outcomeTraceID(o *tracker.Outcome) pcommon.TraceID {
	if !o.TraceID.IsEmpty() {
		return o.TraceID
	}
	h := fnv.New128a()
	if o.MessageID != "" {
		_, _ = h.Write([]byte(o.MessageID))
	} else {
		_, _ = h.Write([]byte(o.ConversationID))
		_ = binary.Write(h, binary.LittleEndian, o.Seq)
	}
	var id pcommon.TraceID
	copy(id[:], h.Sum(nil))
	return id
}

func outcomeSpanID(o *tracker.Outcome) pcommon.SpanID {
	h := fnv.New64a()
	_, _ = h.Write([]byte(o.MessageID))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(o.Outcome))
	_, _ = h.Write([]byte(o.DeviceID))
	_, _ = h.Write([]byte(o.ConversationID))
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(o.Seq))
	binary.LittleEndian.PutUint64(b[8:], uint64(o.End))
	_, _ = h.Write(b[:])
	var id pcommon.SpanID
	binary.BigEndian.PutUint64(id[:], h.Sum64())
	return id
}
