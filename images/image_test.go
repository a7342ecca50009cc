// Package images_test builds the ficus image with scripts/images.sh and
// runs it as a user would: "docker run -p PORT:8080 ficus/ficus:VERSION
// proxy --upstream URL" answers through the published port.
package images_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// docker runs the docker CLI, failing the test on an error.
func docker(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	out, err := dockerErr(ctx, args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

func dockerErr(ctx context.Context, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// needDocker skips without a Docker engine, unless FICUS_REQUIRE_TOOLS=1
// (CI), where it fails.
func needDocker(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := dockerErr(ctx, "version", "--format", "{{.Server.Version}}"); err != nil {
		if os.Getenv("FICUS_REQUIRE_TOOLS") == "1" {
			t.Fatalf("FICUS_REQUIRE_TOOLS=1 but no Docker engine answers: %v\n%s", err, out)
		}
		t.Skipf("no Docker engine answers (%v); set FICUS_REQUIRE_TOOLS=1 to fail instead", err)
	}
}

func TestImageServesThroughPublishedPort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an image (-short)")
	}
	needDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	id := fmt.Sprintf("itest-%d", time.Now().UnixNano())
	image, version := "ficus/ficus:"+id, "v0.0.0-"+id

	build := exec.CommandContext(ctx, "bash", "../scripts/images.sh", "ficus")
	// A TMPDIR of its own: the script's lock then does not make this
	// build wait for another one's (a Postgres image takes minutes).
	build.Env = append(os.Environ(), "FICUS_IMAGE="+image, "FICUS_IMAGE_ONLY=1", "VERSION="+version, "TMPDIR="+t.TempDir())
	build.WaitDelay = 10 * time.Second
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/images.sh ficus: %v\n%s", err, out)
	}
	t.Cleanup(func() { dockerErr(context.Background(), "image", "rm", "-f", image) })

	// What the image says about itself.
	var inspect []struct {
		Config struct {
			User        string
			Env         []string
			Labels      map[string]string
			Healthcheck *struct{ Test []string }
		}
	}
	if err := json.Unmarshal([]byte(docker(t, ctx, "image", "inspect", image)), &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("image inspect: %v", err)
	}
	cfg := inspect[0].Config
	if cfg.User == "" || cfg.User == "root" || strings.HasPrefix(cfg.User, "0") {
		t.Errorf("user %q; want a non-root user", cfg.User)
	}
	if got := cfg.Labels["org.opencontainers.image.version"]; got != version {
		t.Errorf("label org.opencontainers.image.version %q, want %q", got, version)
	}
	if got := cfg.Labels["org.opencontainers.image.revision"]; len(got) < 40 {
		t.Errorf("label org.opencontainers.image.revision %q; want the commit", got)
	}
	if cfg.Healthcheck == nil || !strings.Contains(strings.Join(cfg.Healthcheck.Test, " "), "/ficus healthcheck") {
		t.Errorf("healthcheck %+v; want /ficus healthcheck", cfg.Healthcheck)
	}

	// The CA bundle is in it.
	ctr := docker(t, ctx, "create", image)
	t.Cleanup(func() { dockerErr(context.Background(), "rm", "-f", ctr) })
	if tar := docker(t, ctx, "cp", ctr+":/etc/ssl/certs/ca-certificates.crt", "-"); strings.Count(tar, "BEGIN CERTIFICATE") < 50 {
		t.Errorf("/etc/ssl/certs/ca-certificates.crt holds %d certificates; want Debian's bundle", strings.Count(tar, "BEGIN CERTIFICATE"))
	}

	// The upstream: a second container of the same image (the simulated
	// CRM), on a network of the test's own.
	network := "ficus-" + id
	docker(t, ctx, "network", "create", network)
	t.Cleanup(func() { dockerErr(context.Background(), "network", "rm", network) })
	crm := docker(t, ctx, "run", "-d", "--network", network, "--network-alias", "crm", image, "sim", "crm", "--mode", "webhook")
	t.Cleanup(func() { dockerErr(context.Background(), "rm", "-f", crm) })
	proxy := docker(t, ctx, "run", "-d", "--network", network, "-p", "127.0.0.1::8080",
		"--health-interval", "1s", "--health-start-period", "0s", image, "proxy", "--upstream", "http://crm:8082")
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := dockerErr(context.Background(), "logs", proxy)
			t.Logf("proxy logs:\n%s", logs)
		}
		dockerErr(context.Background(), "rm", "-f", proxy)
	})
	port := docker(t, ctx, "port", proxy, "8080/tcp")
	port = strings.Fields(port)[0] // "127.0.0.1:49153"
	if !strings.HasPrefix(port, "127.0.0.1:") {
		t.Fatalf("published on %q; want 127.0.0.1", port)
	}

	// An answer of the CRM, through the proxy, through the published port.
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for {
		resp, err := client.Get("http://" + port + "/admin/stats")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte("received")) {
				break
			}
			last = fmt.Sprintf("%s: %s", resp.Status, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer through %s within 60s; last: %s", port, last)
		}
		time.Sleep(200 * time.Millisecond) // polling a container that starts
	}

	// And Docker finds it healthy, through ficus healthcheck.
	for {
		status := docker(t, ctx, "inspect", "-f", "{{.State.Health.Status}}", proxy)
		if status == "healthy" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health status %q after 60s", status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
