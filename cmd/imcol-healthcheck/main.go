// Command imcol-healthcheck is the container image's HEALTHCHECK: the image is FROM scratch, with no
// shell or curl, so this static binary asks imcol's health_check extension whether the collector is
// ready and exits 0 when it answers 200, 1 otherwise.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// endpointEnv is the variable every shipped config reads its health_check endpoint from.
const endpointEnv = "IMCOL_HEALTH_ENDPOINT"

func main() {
	url, err := healthURL(os.Getenv(endpointEnv))
	if err == nil {
		err = check(url, 3*time.Second)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "imcol-healthcheck:", err)
		os.Exit(1)
	}
}

// healthURL turns the collector's listen address into one to dial: a wildcard or missing host
// means the collector listens on every interface, so loopback reaches it.
func healthURL(endpoint string) (string, error) {
	if endpoint == "" {
		endpoint = "localhost:13133"
	}
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		return "", fmt.Errorf("%s=%q: %w", endpointEnv, endpoint, err)
	}
	if host == "" || net.ParseIP(host).IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/", nil
}

func check(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// G704 (request forgery) is wrong here: the URL is the container's own health endpoint, from
	// its own IMCOL_HEALTH_ENDPOINT, which only the operator sets.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody) //nolint:gosec // see above
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req) //nolint:gosec // see above
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
