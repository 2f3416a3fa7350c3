// Package sender emits a workload's lifecycle events to a collector over OTLP (gRPC or
// HTTP), as spans or log records depending on the simulated service, at the pace the
// workload's schedule dictates.
package sender // import "github.com/imcol/imcol/testbed/sender"

import (
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/testbed/workload"
)

// Signal is how a service reports its lifecycle events.
type Signal uint8

const (
	// SignalTraces emits spans.
	SignalTraces Signal = iota
	// SignalLogs emits log records.
	SignalLogs
	numSignals
)

func (s Signal) String() string {
	if s == SignalLogs {
		return "logs"
	}
	return "traces"
}

// Signals says, per service, which signal it emits.
type Signals [workload.NumServices]Signal

// ParseSignals reads "traces", "logs", "mixed" (gateway and push log, msg and transfer trace,
// so every message crosses both pipelines) or a list like "gateway=logs,msg=traces" (services
// not listed emit spans).
func ParseSignals(v string) (Signals, error) {
	var s Signals
	switch v {
	case "", "traces":
		return s, nil
	case "logs":
		for i := range s {
			s[i] = SignalLogs
		}
		return s, nil
	case "mixed":
		s[workload.ServiceGateway], s[workload.ServicePush] = SignalLogs, SignalLogs
		return s, nil
	}
	for _, kv := range strings.Split(v, ",") {
		name, sig, ok := strings.Cut(strings.TrimSpace(kv), "=")
		svc, known := workload.ParseService(name)
		if !ok || !known {
			return s, fmt.Errorf("signals: %q is not service=traces|logs with service one of gateway, msg, transfer, push", kv)
		}
		switch sig {
		case "traces":
			s[svc] = SignalTraces
		case "logs":
			s[svc] = SignalLogs
		default:
			return s, fmt.Errorf("signals: %q: want traces or logs, got %q", name, sig)
		}
	}
	return s, nil
}

// String is the canonical form ParseSignals reads.
func (s Signals) String() string {
	parts := make([]string, len(s))
	for i, sig := range s {
		parts[i] = strings.TrimPrefix(workload.Service(i).Name(), "im-") + "=" + sig.String()
	}
	return strings.Join(parts, ",")
}

const scopeName = "github.com/imcol/imcol/testbed"

// buildTraces turns events into spans, one ResourceSpans per service, keeping their order.
func buildTraces(evts []workload.Event, base time.Time) ptrace.Traces {
	td := ptrace.NewTraces()
	var bySvc [workload.NumServices]ptrace.SpanSlice
	var have [workload.NumServices]bool
	for i := range evts {
		e := &evts[i]
		spans := bySvc[e.Service]
		if !have[e.Service] {
			have[e.Service] = true
			rs := td.ResourceSpans().AppendEmpty()
			setResource(rs.Resource(), e.Service)
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName(scopeName)
			spans = ss.Spans()
			bySvc[e.Service] = spans
		}
		sp := spans.AppendEmpty()
		sp.SetTraceID(e.Msg.TraceID)
		sp.SetSpanID(e.SpanID)
		sp.SetParentSpanID(e.ParentSpanID)
		sp.SetName(e.Name)
		sp.SetKind(spanKind(e))
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(base.Add(e.Start)))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(base.Add(e.End)))
		putAttributes(sp.Attributes(), e)
		if e.Failed {
			sp.Status().SetCode(ptrace.StatusCodeError)
			sp.Status().SetMessage(e.StatusMessage)
		}
	}
	return td
}

// buildLogs turns events into log records, one ResourceLogs per service, keeping their order.
func buildLogs(evts []workload.Event, base time.Time) plog.Logs {
	ld := plog.NewLogs()
	var bySvc [workload.NumServices]plog.LogRecordSlice
	var have [workload.NumServices]bool
	for i := range evts {
		e := &evts[i]
		recs := bySvc[e.Service]
		if !have[e.Service] {
			have[e.Service] = true
			rl := ld.ResourceLogs().AppendEmpty()
			setResource(rl.Resource(), e.Service)
			sl := rl.ScopeLogs().AppendEmpty()
			sl.Scope().SetName(scopeName)
			recs = sl.LogRecords()
			bySvc[e.Service] = recs
		}
		lr := recs.AppendEmpty()
		ts := pcommon.NewTimestampFromTime(base.Add(e.End))
		lr.SetTimestamp(ts)
		lr.SetObservedTimestamp(ts)
		lr.SetEventName(e.Name)
		lr.SetTraceID(e.Msg.TraceID)
		lr.SetSpanID(e.SpanID)
		if e.Failed {
			lr.SetSeverityNumber(plog.SeverityNumberError)
			lr.SetSeverityText("ERROR")
			lr.Body().SetStr(e.StatusMessage)
		} else {
			lr.SetSeverityNumber(plog.SeverityNumberInfo)
			lr.SetSeverityText("INFO")
			lr.Body().SetStr(e.Name)
		}
		putAttributes(lr.Attributes(), e)
	}
	return ld
}

func setResource(r pcommon.Resource, s workload.Service) {
	r.Attributes().PutStr("service.name", s.Name())
	r.Attributes().PutStr("service.namespace", "imtestbed")
}

func spanKind(e *workload.Event) ptrace.SpanKind {
	switch e.Stage {
	case imsemconv.StageUnknown, imsemconv.StageAck:
		return ptrace.SpanKindServer
	case imsemconv.StagePersist:
		return ptrace.SpanKindConsumer
	case imsemconv.StageDeliver:
		return ptrace.SpanKindProducer
	}
	return ptrace.SpanKindInternal
}

// putAttributes writes the imsemconv attributes of the event; message bodies never
// appear, as in a real deployment.
func putAttributes(a pcommon.Map, e *workload.Event) {
	a.EnsureCapacity(7)
	a.PutStr(imsemconv.AttrMessageID, e.Msg.ID)
	a.PutStr(imsemconv.AttrConversationID, e.Msg.Conversation.ID)
	a.PutStr(imsemconv.AttrConversationType, e.Msg.Conversation.Type)
	if e.Stage == imsemconv.StageUnknown {
		return
	}
	a.PutStr(imsemconv.AttrStage, e.Stage.String())
	if e.HasSeq {
		a.PutInt(imsemconv.AttrSeq, e.Seq)
	}
	if e.Stage == imsemconv.StagePush && e.Device == "" {
		a.PutInt(imsemconv.AttrFanout, int64(e.Fanout))
	}
	if e.Device != "" {
		a.PutStr(imsemconv.AttrRecipientDevice, e.Device)
	}
	if e.Offline {
		a.PutBool(imsemconv.AttrPushOffline, true)
	}
}
