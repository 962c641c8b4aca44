package chaos

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
)

// CLI runs the ringfence CLI against one host's daemon: its stdout, or
// an error that says what failed.
type CLI func(args ...string) (string, error)

// Names are the test hosts' peer names, host 1 first.
var Names = []string{"alpha", "beta", "gamma", "delta"}

// Form makes the hosts one cluster: init on the first, the others join
// with a token each (the last as an etcd-only witness if witness), then
// it waits until every host sees every host up.
func Form(nt *Net, clis []CLI, witness bool, timeout time.Duration) error {
	var want []string
	for i, cli := range clis {
		n := i + 1
		if i == 0 {
			if _, err := cli("cluster", "init", "--peer-name", Names[0], "--name", nt.Addr(1)); err != nil {
				return err
			}
		} else {
			tok, err := clis[0]("host", "token", "--peer-name", Names[i])
			if err != nil {
				return err
			}
			args := []string{"cluster", "join", strings.TrimSpace(tok), "--peer-name", Names[i], "--name", nt.Addr(n)}
			if witness && n == len(clis) {
				args = append(args, "--witness")
			}
			if _, err := cli(args...); err != nil {
				return err
			}
		}
		// The first three run etcd members; later hosts are clients.
		role := ":member:true:true"
		if n > 3 {
			role = ":client:false:true"
		}
		want = append(want, Names[i]+role)
	}
	sort.Strings(want) // as status lists them
	for _, cli := range clis {
		if err := AwaitHosts(cli, strings.Join(want, " "), timeout); err != nil {
			return err
		}
	}
	return nil
}

// HostsLine summarises a status's hosts as NAME:etcd:voting:up.
func HostsLine(st api.ClusterStatus) string {
	var out []string
	for _, h := range st.Hosts {
		out = append(out, fmt.Sprintf("%s:%s:%v:%v", h.Name, h.Etcd, h.Voting, h.Alive))
	}
	return strings.Join(out, " ")
}

// AwaitHosts waits until cli's `cluster status` lists exactly want.
func AwaitHosts(cli CLI, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		out, err := cli("cluster", "status", "--json")
		var st api.ClusterStatus
		if err == nil && json.Unmarshal([]byte(out), &st) == nil {
			if last = HostsLine(st); last == want {
				return nil
			}
		} else if err != nil {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s the cluster's hosts are not %q: %s", timeout, want, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
