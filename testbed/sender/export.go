package sender

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// exporter sends one request; rejected counts items the server refused in a partial success.
type exporter interface {
	traces(ctx context.Context, td ptrace.Traces) (rejected int64, err error)
	logs(ctx context.Context, ld plog.Logs) (rejected int64, err error)
	close() error
}

// errPermanent wraps failures a retry cannot fix (a bad request, an unknown path).
type errPermanent struct{ err error }

func (e errPermanent) Error() string { return e.err.Error() }
func (e errPermanent) Unwrap() error { return e.err }

func newExporter(protocol, endpoint string) (exporter, error) {
	switch protocol {
	case "grpc", "":
		conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, fmt.Errorf("otlp grpc client for %s: %w", endpoint, err)
		}
		return &grpcExporter{conn: conn, tc: ptraceotlp.NewGRPCClient(conn), lc: plogotlp.NewGRPCClient(conn)}, nil
	case "http":
		return &httpExporter{base: "http://" + endpoint, client: &http.Client{Timeout: 30 * time.Second}}, nil
	}
	return nil, fmt.Errorf("protocol: want grpc or http, got %q", protocol)
}

type grpcExporter struct {
	conn *grpc.ClientConn
	tc   ptraceotlp.GRPCClient
	lc   plogotlp.GRPCClient
}

func (g *grpcExporter) traces(ctx context.Context, td ptrace.Traces) (int64, error) {
	resp, err := g.tc.Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
	if err != nil {
		return 0, grpcError(err)
	}
	return resp.PartialSuccess().RejectedSpans(), nil
}

func (g *grpcExporter) logs(ctx context.Context, ld plog.Logs) (int64, error) {
	resp, err := g.lc.Export(ctx, plogotlp.NewExportRequestFromLogs(ld))
	if err != nil {
		return 0, grpcError(err)
	}
	return resp.PartialSuccess().RejectedLogRecords(), nil
}

func (g *grpcExporter) close() error { return g.conn.Close() }

// grpcError marks the codes OTLP says are not worth retrying.
func grpcError(err error) error {
	switch status.Code(err) {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange, codes.Unavailable,
		codes.DataLoss, codes.ResourceExhausted:
		return err
	}
	return errPermanent{err}
}

type httpExporter struct {
	base   string
	client *http.Client
}

func (h *httpExporter) traces(ctx context.Context, td ptrace.Traces) (int64, error) {
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		return 0, errPermanent{err}
	}
	raw, err := h.post(ctx, "/v1/traces", body)
	if err != nil {
		return 0, err
	}
	resp := ptraceotlp.NewExportResponse()
	if err := resp.UnmarshalProto(raw); err != nil {
		return 0, errPermanent{fmt.Errorf("decoding the traces response: %w", err)}
	}
	return resp.PartialSuccess().RejectedSpans(), nil
}

func (h *httpExporter) logs(ctx context.Context, ld plog.Logs) (int64, error) {
	body, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	if err != nil {
		return 0, errPermanent{err}
	}
	raw, err := h.post(ctx, "/v1/logs", body)
	if err != nil {
		return 0, err
	}
	resp := plogotlp.NewExportResponse()
	if err := resp.UnmarshalProto(raw); err != nil {
		return 0, errPermanent{fmt.Errorf("decoding the logs response: %w", err)}
	}
	return resp.PartialSuccess().RejectedLogRecords(), nil
}

// maxResponse bounds what is read from a response body; OTLP responses are tiny.
const maxResponse = 1 << 20

func (h *httpExporter) post(ctx context.Context, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, errPermanent{err}
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return raw, nil
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return nil, fmt.Errorf("POST %s: %s", path, resp.Status)
	}
	return nil, errPermanent{fmt.Errorf("POST %s: %s", path, resp.Status)}
}

func (h *httpExporter) close() error {
	h.client.CloseIdleConnections()
	return nil
}

// retry calls send until it succeeds, fails permanently, or timeout passes, backing off
// from 10 ms to 1 s. It returns the number of retries.
func retry(ctx context.Context, timeout time.Duration, send func(context.Context) error) (int, error) {
	deadline := time.Now().Add(timeout)
	backoff := 10 * time.Millisecond
	for n := 0; ; n++ {
		attempt, cancel := context.WithDeadline(ctx, deadline)
		err := send(attempt)
		cancel()
		var perm errPermanent
		switch {
		case err == nil:
			return n, nil
		case errors.As(err, &perm), ctx.Err() != nil:
			return n, err
		case time.Now().Add(backoff).After(deadline):
			return n, fmt.Errorf("gave up after %s: %w", timeout, err)
		}
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return n, ctx.Err()
		case <-timer.C:
		}
		backoff = min(2*backoff, time.Second)
	}
}
