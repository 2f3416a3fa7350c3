package harness

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/testbed/faults"
	"github.com/imcol/imcol/testbed/workload"
)

// ClassQuality is the detection quality of one outcome label ("lost/ack_timeout@push").
// A message counts once per label: TP when the truth has it and a record says it, FP when
// only a record says it, FN when only the truth has it.
type ClassQuality struct {
	Label     string  `json:"label"`
	Expected  int64   `json:"expected"`
	TP        int64   `json:"tp"`
	FP        int64   `json:"fp"`
	FN        int64   `json:"fn"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	// Latency is from the message's first event leaving the generator to the record
	// reaching the sink, over true positives (the sender's export lag included).
	Latency Latency `json:"detection_latency"`
}

// Latency summarises durations, in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// FaultQuality says, per injected fault class, how many messages got exactly the records
// their truth lists.
type FaultQuality struct {
	Class    faults.Class `json:"class"`
	Messages int64        `json:"messages"`
	Exact    int64        `json:"exact"`
}

// Validation compares the outcome records with the ground truth.
type Validation struct {
	// Signal is the signal of the records compared (traces or logs), when validated per signal.
	Signal   string `json:"signal,omitempty"`
	Messages int64  `json:"messages"`
	Records  int64  `json:"records"`
	// Classes are sorted by label.
	Classes []ClassQuality `json:"classes"`
	// Confusion counts messages by expected verdict (rows) and detected verdict (columns):
	// "none" when no delivered or lost record came, "conflicting" when both did. A seq gap's
	// loss that a retraction of the seq takes back is no verdict (see verdictOf).
	Confusion map[string]map[string]int64 `json:"confusion"`
	Faults    []FaultQuality              `json:"faults"`
	// Unmatched counts records that name no planned message; Repeats records that repeat a
	// label already reported for the same message.
	Unmatched int64 `json:"unmatched"`
	Repeats   int64 `json:"repeats"`
	// Examples lists up to 20 mismatches, for the reader of a failed run.
	Examples []string `json:"examples,omitempty"`
}

// Exact reports whether precision and recall are 1 for every label, with no unmatched or
// repeated records.
func (v *Validation) Exact() bool {
	for _, c := range v.Classes {
		if c.FP != 0 || c.FN != 0 {
			return false
		}
	}
	return v.Unmatched == 0 && v.Repeats == 0
}

// Quality returns the entry of a label, if any.
func (v *Validation) Quality(label string) (ClassQuality, bool) {
	for _, c := range v.Classes {
		if c.Label == label {
			return c, true
		}
	}
	return ClassQuality{}, false
}

// Summary is a one-line account, for logs.
func (v *Validation) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d messages, %d records, %d unmatched, %d repeated;", v.Messages, v.Records, v.Unmatched, v.Repeats)
	for _, c := range v.Classes {
		fmt.Fprintf(&b, " %s P=%.4f R=%.4f (tp %d fp %d fn %d);", c.Label, c.Precision, c.Recall, c.TP, c.FP, c.FN)
	}
	return b.String()
}

// Validations holds one Validation per signal outcome records are emitted as.
type Validations []Validation

// ValidateSignals validates the records of each signal on its own: im_loss may emit every
// outcome both as a span and as a log record, and each signal must be right by itself.
func ValidateSignals(book *faults.Book, seed uint64, start time.Time, records []Record, signals []string) Validations {
	out := make(Validations, 0, len(signals))
	for _, sig := range signals {
		var mine []Record
		for _, r := range records {
			if r.Signal == sig {
				mine = append(mine, r)
			}
		}
		v := Validate(book, seed, start, mine)
		v.Signal = sig
		out = append(out, v)
	}
	return out
}

// Exact reports whether every signal's validation is exact.
func (vs Validations) Exact() bool {
	for i := range vs {
		if !vs[i].Exact() {
			return false
		}
	}
	return len(vs) > 0
}

// Summary joins the signals' summaries.
func (vs Validations) Summary() string {
	parts := make([]string, len(vs))
	for i := range vs {
		parts[i] = vs[i].Signal + ": " + vs[i].Summary()
	}
	return strings.Join(parts, "\n")
}

// Examples joins the signals' examples.
func (vs Validations) Examples() []string {
	var out []string
	for i := range vs {
		for _, e := range vs[i].Examples {
			out = append(out, vs[i].Signal+": "+e)
		}
	}
	return out
}

// Validate compares records with the truth of every message in book. seed is the workload
// seed (message ids encode the index); start is the sender's start time.
func Validate(book *faults.Book, seed uint64, start time.Time, records []Record) Validation {
	truths := book.All()
	v := Validation{Messages: int64(len(truths)), Records: int64(len(records)), Confusion: map[string]map[string]int64{}}
	type seqKey struct {
		conv string
		seq  int64
	}
	bySeq := make(map[seqKey]int64)
	for _, t := range truths {
		if t.Seq > 0 {
			bySeq[seqKey{t.Conversation.ID, t.Seq}] = t.Index
		}
	}
	detected := make(map[int64][]hit)
	example := func(format string, args ...any) {
		if len(v.Examples) < 20 {
			v.Examples = append(v.Examples, fmt.Sprintf(format, args...))
		}
	}
	for _, r := range records {
		idx, ok := workload.ParseMessageID(seed, r.MessageID)
		if !ok && r.MessageID == "" && r.HasSeq {
			idx, ok = bySeq[seqKey{r.ConversationID, r.Seq}]
		}
		if !ok || idx >= int64(len(truths)) {
			v.Unmatched++
			example("record %s for message %q conversation %q seq %d matches no planned message", labelOf(r), r.MessageID, r.ConversationID, r.Seq)
			continue
		}
		l := labelOf(r)
		if slices.ContainsFunc(detected[idx], func(h hit) bool { return h.label == l }) {
			v.Repeats++
			example("message %d (%s): record %s repeated", idx, truths[idx].Class, l)
			continue
		}
		detected[idx] = append(detected[idx], hit{l, r.At})
	}

	classes := map[string]*ClassQuality{}
	latencies := map[string][]float64{}
	get := func(l string) *ClassQuality {
		c := classes[l]
		if c == nil {
			c = &ClassQuality{Label: l}
			classes[l] = c
		}
		return c
	}
	byFault := map[faults.Class]*FaultQuality{}
	for _, t := range truths {
		fq := byFault[t.Class]
		if fq == nil {
			fq = &FaultQuality{Class: t.Class}
			byFault[t.Class] = fq
		}
		fq.Messages++
		hits := detected[t.Index]
		exact := len(hits) == len(t.Labels)
		expected := make([]string, len(t.Labels))
		for i, l := range t.Labels {
			expected[i] = l.String()
		}
		for _, l := range t.Labels {
			ls := l.String()
			c := get(ls)
			c.Expected++
			i := slices.IndexFunc(hits, func(h hit) bool { return h.label == ls })
			if i < 0 {
				c.FN++
				exact = false
				example("message %d (%s, conversation %s seq %d): expected %s, got %v", t.Index, t.Class, t.Conversation.ID, t.Seq, ls, hitLabels(hits))
				continue
			}
			c.TP++
			latencies[ls] = append(latencies[ls], float64(hits[i].at.Sub(start.Add(t.FirstDue)))/float64(time.Millisecond))
		}
		for _, h := range hits {
			if !slices.ContainsFunc(t.Labels, func(l faults.Label) bool { return l.String() == h.label }) {
				get(h.label).FP++
				exact = false
				example("message %d (%s, conversation %s seq %d): unexpected %s (expected %v)", t.Index, t.Class, t.Conversation.ID, t.Seq, h.label, t.Labels)
			}
		}
		if exact {
			fq.Exact++
		}
		expectedPrimary, detectedPrimary := verdictOf(expected), verdictOf(hitLabels(hits))
		row := v.Confusion[expectedPrimary]
		if row == nil {
			row = map[string]int64{}
			v.Confusion[expectedPrimary] = row
		}
		row[detectedPrimary]++
	}
	for l, c := range classes {
		c.Precision = ratio(c.TP, c.TP+c.FP)
		c.Recall = ratio(c.TP, c.TP+c.FN)
		c.Latency = summarizeLatency(latencies[l])
		v.Classes = append(v.Classes, *c)
	}
	sort.Slice(v.Classes, func(i, j int) bool { return v.Classes[i].Label < v.Classes[j].Label })
	for _, fq := range byFault {
		v.Faults = append(v.Faults, *fq)
	}
	sort.Slice(v.Faults, func(i, j int) bool { return v.Faults[i].Class < v.Faults[j].Class })
	return v
}

// labelOf turns a record into the label the truth uses. A delivered record's stage is
// always ack (the processor may leave im.loss.stage empty on it).
func labelOf(r Record) string {
	l := faults.Label{Outcome: r.Outcome, Reason: r.Reason, Retracted: r.Retracted}
	if st, ok := imsemconv.ParseStage(r.Stage); ok {
		l.Stage = st
	}
	switch r.Outcome {
	case imsemconv.OutcomeDelivered:
		l.Stage, l.Reason, l.Retracted = imsemconv.StageAck, "", false
	case imsemconv.OutcomeLate, imsemconv.OutcomeDuplicate:
		// The loss reason of a late record repeats the earlier loss; the truth keys the
		// record by the late event's stage only.
		l.Reason = ""
	}
	return l.String()
}

func isPrimary(label string) bool {
	return strings.HasPrefix(label, string(imsemconv.OutcomeDelivered)+"@") || strings.HasPrefix(label, string(imsemconv.OutcomeLost)+"/")
}

var (
	seqGapLoss       = faults.SeqGapLoss().String()
	seqGapRetraction = faults.SeqGapRetraction().String()
)

// verdictOf is the verdict (delivered or lost label) among a message's labels: "none"
// without one, "conflicting" with several. A seq gap's loss taken back by the seq's
// retraction is not one: a late message's seq was reported missing until its late persist
// came, while the message itself was delivered.
func verdictOf(labels []string) string {
	retracted := slices.Contains(labels, seqGapRetraction)
	verdict := "none"
	for _, l := range labels {
		if !isPrimary(l) || retracted && l == seqGapLoss {
			continue
		}
		if verdict != "none" {
			return "conflicting"
		}
		verdict = l
	}
	return verdict
}

// Detections returns, per message index, when the first record of each label reached the
// sink: what latency checks beyond Validate's summary need.
func Detections(book *faults.Book, seed uint64, records []Record) map[int64]map[string]time.Time {
	truths := book.All()
	bySeq := make(map[[2]string]int64)
	for _, t := range truths {
		if t.Seq > 0 {
			bySeq[[2]string{t.Conversation.ID, strconv.FormatInt(t.Seq, 10)}] = t.Index
		}
	}
	out := map[int64]map[string]time.Time{}
	for _, r := range records {
		idx, ok := workload.ParseMessageID(seed, r.MessageID)
		if !ok && r.MessageID == "" && r.HasSeq {
			idx, ok = bySeq[[2]string{r.ConversationID, strconv.FormatInt(r.Seq, 10)}]
		}
		if !ok {
			continue
		}
		m := out[idx]
		if m == nil {
			m = map[string]time.Time{}
			out[idx] = m
		}
		l := labelOf(r)
		if at, seen := m[l]; !seen || r.At.Before(at) {
			m[l] = r.At
		}
	}
	return out
}

// hit is one label detected for a message and when its first record arrived.
type hit struct {
	label string
	at    time.Time
}

func hitLabels(hits []hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.label
	}
	return out
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 1 // nothing expected and nothing claimed: nothing wrong
	}
	return float64(a) / float64(b)
}

func summarizeLatency(ms []float64) Latency {
	if len(ms) == 0 {
		return Latency{}
	}
	sort.Float64s(ms)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(ms)))) - 1
		return ms[max(0, min(i, len(ms)-1))]
	}
	return Latency{Count: len(ms), P50: q(0.50), P95: q(0.95), P99: q(0.99), Max: ms[len(ms)-1]}
}
