package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHealthURL(t *testing.T) {
	for endpoint, want := range map[string]string{
		"":                "http://localhost:13133/", // the shipped configs' default
		"0.0.0.0:13133":   "http://127.0.0.1:13133/",
		":13133":          "http://127.0.0.1:13133/",
		"[::]:9000":       "http://127.0.0.1:9000/",
		"127.0.0.1:14000": "http://127.0.0.1:14000/",
		"imcol:13133":     "http://imcol:13133/",
	} {
		got, err := healthURL(endpoint)
		require.NoError(t, err, endpoint)
		assert.Equal(t, want, got, endpoint)
	}
	_, err := healthURL("13133")
	require.ErrorContains(t, err, `IMCOL_HEALTH_ENDPOINT="13133"`)
}

func TestCheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	require.NoError(t, check(srv.URL, time.Second))
	status = http.StatusServiceUnavailable
	require.ErrorContains(t, check(srv.URL, time.Second), "503")
	srv.Close()
	err := check(srv.URL, time.Second)
	require.Error(t, err)
	assert.ErrorContains(t, err, "connect")
}
