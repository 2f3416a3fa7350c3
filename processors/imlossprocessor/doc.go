// Package imlossprocessor follows every instant message to its acknowledgement and reports where it was lost.
package imlossprocessor // import "github.com/imcol/imcol/processors/imlossprocessor"

import "github.com/imcol/imcol/processors/imlossprocessor/internal/tracker"

// StartupUncertainty is how long after its start im_loss distrusts event times when it
// restored no exact state (no storage, an empty one, or only a crash's checkpoint): a message
// with an event stamped before start plus this may have had other events applied, and been
// decided, by a previous instance, so it is never declared lost on missing evidence. Traffic
// whose verdicts a test checks is sent after it.
const StartupUncertainty = tracker.CrashClockSkew
