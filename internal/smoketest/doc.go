// Package smoketest holds end-to-end tests of the imcol binary itself: the default
// configuration serves every signal over OTLP gRPC and HTTP, invalid configurations are
// refused by name, and the component list matches the build manifest.
package smoketest
