package cmd

import (
	"fmt"

	"github.com/rs/zerolog"

	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/repl"
	"github.com/psdb/psdb/shardd/server"
	"github.com/psdb/psdb/shardd/storage"
)

// staticReplication sets up replication with static roles (Options.
// StaticReplication, the --repl-static flag): the first member of the
// shard in cluster.yaml is the primary (it tracks progress and writes wait
// for their write concern, w:"majority" by default); every other member is
// a secondary that pulls from it, refuses writes with NotWritablePrimary
// and serves its oplog to chained pullers. Without the option it returns
// (nil, nil, nil): the member serves alone, as before replication existed.
//
// Static roles are a stand-in until elections exist (issue 5): nothing
// here survives the primary's death, and a secondary that diverged stops
// pulling (its puller's error is logged) rather than roll back.
func staticReplication(o Options, n config.Node, eng *storage.Engine, log zerolog.Logger) (shardpb.ReplicationServer, *repl.Puller, error) {
	if !o.StaticReplication {
		return nil, nil, nil
	}
	sh, ok := o.Cluster.Shard(n.Shard)
	if !ok || len(sh.Members) == 0 {
		return nil, nil, fmt.Errorf("shardd %s: shard %q has no members in cluster.yaml", n.Name, n.Shard)
	}
	names := make([]string, len(sh.Members))
	for i, m := range sh.Members {
		names[i] = m.Name
	}
	primary := sh.Members[0]
	if n.Name == primary.Name {
		prog, err := repl.NewProgress(repl.ProgressOptions{Self: n.Name, Members: names, SelfDurable: eng.LastOpTime, Term: eng.Term()})
		if err != nil {
			return nil, nil, err
		}
		rs, err := server.NewReplication(server.ReplicationOptions{Engine: eng, Progress: prog, Logger: log})
		if err != nil {
			return nil, nil, err
		}
		log.Info().Str("replRole", "primary").Strs("members", names).Msg("static replication")
		return rs, nil, nil
	}
	rs, err := server.NewReplication(server.ReplicationOptions{Engine: eng, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	p, err := repl.NewPuller(repl.PullerOptions{Member: n.Name, Source: primary.Addr, Engine: eng, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	log.Info().Str("replRole", "secondary").Str("syncSource", primary.Name).Msg("static replication")
	return rs, p, nil
}
