package workload

import (
	"fmt"
	"strings"
	"time"
)

// Lag delays every event of one service on its way to the exporter, as a backed-up queue or
// a slow sidecar between the service and the collector would: the events keep their own
// timestamps, they only arrive later.
//
// The lag ramps in linearly over Ramp from the start of the run (an event due at t is held
// Delay·min(t/Ramp, 1)), so the service keeps sending while it falls behind, as a real backlog
// builds up: with Ramp = Delay its events leave at half speed until the lag is reached. A step
// (Ramp 0) makes the service silent for Delay at the start, which a collector cannot tell from
// a service that does not exist yet (im_loss waits source_idle_timeout for every source after
// it starts, and no longer).
type Lag struct {
	Delay time.Duration
	Ramp  time.Duration
}

// At is how long an event due at due (relative to the start of the run) is held.
func (l Lag) At(due time.Duration) time.Duration {
	if l.Delay <= 0 {
		return 0
	}
	if l.Ramp <= 0 || due >= l.Ramp {
		return l.Delay
	}
	if due <= 0 {
		return 0
	}
	return time.Duration(float64(l.Delay) * float64(due) / float64(l.Ramp))
}

// Lags holds the lag of every service.
type Lags [NumServices]Lag

// AllLagged gives every service the same lag.
func AllLagged(l Lag) Lags {
	var out Lags
	for i := range out {
		out[i] = l
	}
	return out
}

// Of is the hold of an event of service s due at due.
func (ls Lags) Of(s Service, due time.Duration) time.Duration {
	if s >= NumServices {
		return 0
	}
	return ls[s].At(due) //nolint:gosec // G602 is wrong: s < NumServices, the array's length, was checked above
}

// Max is the largest lag of any service once ramped in.
func (ls Lags) Max() time.Duration {
	var m time.Duration
	for _, l := range ls {
		m = max(m, l.Delay)
	}
	return m
}

// Zero reports whether no service is lagged.
func (ls Lags) Zero() bool { return ls.Max() == 0 }

// String is the form ParseLags reads ("none" when nothing lags).
func (ls Lags) String() string {
	var parts []string
	for i, l := range ls {
		if l.Delay > 0 {
			parts = append(parts, fmt.Sprintf("%s=%s/%s", Service(i).Name(), l.Delay, l.Ramp))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// MaxLag bounds a lag: the testbed is for minutes-long runs.
const MaxLag = time.Hour

// ParseLags reads "service=delay[/ramp],..." (the imload -lag flag): service is a service name
// (im-gateway) or its short form (gateway), or "all"; the ramp defaults to the delay. Later
// entries override earlier ones, so "all=5s,gateway=10s" lags the gateway more.
func ParseLags(v string) (Lags, error) {
	var out Lags
	if s := strings.TrimSpace(v); s == "" || s == "none" {
		return out, nil
	}
	for _, kv := range strings.Split(v, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return out, fmt.Errorf("lag: %q is not service=delay[/ramp]", kv)
		}
		delayS, rampS, hasRamp := strings.Cut(val, "/")
		delay, err := time.ParseDuration(delayS)
		if err != nil || delay < 0 || delay > MaxLag {
			return out, fmt.Errorf("lag: %s: delay %q is not a duration in 0..%s", name, delayS, MaxLag)
		}
		l := Lag{Delay: delay, Ramp: delay}
		if hasRamp {
			ramp, err := time.ParseDuration(rampS)
			if err != nil || ramp < 0 || ramp > MaxLag {
				return out, fmt.Errorf("lag: %s: ramp %q is not a duration in 0..%s", name, rampS, MaxLag)
			}
			l.Ramp = ramp
		}
		if name == "all" {
			out = AllLagged(l)
			continue
		}
		svc, known := ParseService(name)
		if !known {
			return out, fmt.Errorf("lag: unknown service %q (want all, or one of gateway, msg, transfer, push)", name)
		}
		out[svc] = l
	}
	return out, nil
}

// Lagged wraps a source so that every event of a lagged service falls due later by its
// service's lag (Lags.Of at its original due time). The lag never decreases with the due
// time, so each service's events keep their order.
func Lagged(src Source, lags Lags) Source {
	if lags.Zero() {
		return src
	}
	return &laggedSource{src: src, lags: lags}
}

type laggedSource struct {
	src  Source
	lags Lags
}

func (l *laggedSource) Next() (time.Duration, []Event, bool) {
	start, evts, ok := l.src.Next()
	for i := range evts {
		evts[i].Due += l.lags.Of(evts[i].Service, evts[i].Due)
	}
	return start, evts, ok
}
