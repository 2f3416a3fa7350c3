// Package imlossprocessor follows every instant message to its acknowledgement and reports where it was lost.
package imlossprocessor // import "github.com/imcol/imcol/processors/imlossprocessor"
