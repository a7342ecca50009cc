package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/moby/moby/client"
)

// sweep removes the containers and networks of earlier runs whose test
// process is gone (killed before its cleanup ran), so that a run never
// finds the leftovers of another. Runs still alive are left alone: two
// runs may share a Docker engine.
func sweep(ctx context.Context, docker *client.Client) error {
	dead := func(labels map[string]string) bool {
		run, ok := labels[runLabel]
		if !ok {
			return false
		}
		pid, err := strconv.Atoi(strings.SplitN(run, "-", 2)[0])
		if err != nil || pid <= 0 {
			return false
		}
		if pid == os.Getpid() {
			return false
		}
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}
	var errs []error
	ctrs, err := docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", runLabel)})
	if err != nil {
		return fmt.Errorf("list leftover containers: %w", err)
	}
	for _, c := range ctrs.Items {
		if dead(c.Labels) {
			if _, err := docker.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	nws, err := docker.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("label", runLabel)})
	if err != nil {
		return fmt.Errorf("list leftover networks: %w", err)
	}
	for _, n := range nws.Items {
		if dead(n.Labels) {
			if _, err := docker.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
