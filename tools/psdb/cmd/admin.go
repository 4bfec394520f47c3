package cmd

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/tools/psdb/admin"
)

func init() { register(newAdminCmd) }

// adminFlags are the flags every admin subcommand shares.
type adminFlags struct {
	uri            string
	json           bool
	connectTimeout time.Duration
	timeout        time.Duration
}

// run connects, runs op and renders its result on the command's stdout
// (a table, or one JSON document with --json).
func (f *adminFlags) run(c *cobra.Command, op func(ctx context.Context, cl *admin.Client) (admin.Result, error)) error {
	ctx := c.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	cl, err := admin.Connect(ctx, f.uri, f.connectTimeout, f.timeout)
	if err != nil {
		return err
	}
	defer cl.Close(context.Background())
	res, err := op(ctx, cl)
	if err != nil {
		return err
	}
	if f.json {
		return admin.WriteJSON(c.OutOrStdout(), res)
	}
	return res.WriteTable(c.OutOrStdout())
}

// group is a command that only holds subcommands: run without one (or
// with an unknown one) it fails with the list of its subcommands.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			var names []string
			for _, s := range c.Commands() {
				if s.IsAvailableCommand() {
					names = append(names, s.Name())
				}
			}
			if len(args) == 0 {
				return fmt.Errorf("%s needs a subcommand: one of %s", c.CommandPath(), strings.Join(names, ", "))
			}
			return fmt.Errorf("unknown subcommand %q of %s: want one of %s", args[0], c.CommandPath(), strings.Join(names, ", "))
		},
	}
	g.AddCommand(subs...)
	return g
}

func newAdminCmd() *cobra.Command {
	f := &adminFlags{}
	c := group("admin", "Operate a running cluster through a router: shards, balancer, chunks, replica sets, summary",
		newAdminShardsCmd(f), newAdminBalancerCmd(f), newAdminChunksCmd(f), newAdminRSCmd(f), newAdminSummaryCmd(f))
	c.Long = "Operate a running cluster through one of its routers, with MongoDB's admin commands.\n" +
		"Results print as aligned tables, or as one JSON document with --json. A server error\n" +
		"prints its code name and makes psdb exit with status 1."
	pf := c.PersistentFlags()
	pf.StringVar(&f.uri, "uri", admin.DefaultURI, "MongoDB URI of the cluster's router(s)")
	pf.BoolVar(&f.json, "json", false, "print the result as one JSON document")
	pf.DurationVar(&f.connectTimeout, "connect-timeout", 5*time.Second, "how long to wait for a router to answer at all")
	pf.DurationVar(&f.timeout, "timeout", 60*time.Second, "bound on each command sent to the router")
	return c
}

func newAdminShardsCmd(f *adminFlags) *cobra.Command {
	list := &cobra.Command{
		Use:   "list",
		Short: "List the shards with their state and members",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return f.run(c, func(ctx context.Context, cl *admin.Client) (admin.Result, error) { return cl.ListShards(ctx) })
		},
	}
	var name string
	add := &cobra.Command{
		Use:   "add <set>/<host:port>[,<host:port>...]",
		Short: "Register a shard (its shardd processes must run already)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return f.run(c, func(ctx context.Context, cl *admin.Client) (admin.Result, error) {
				return cl.AddShard(ctx, args[0], name)
			})
		},
	}
	add.Flags().StringVar(&name, "name", "", "shard name (default: the set name)")
	var wait bool
	var waitTimeout, interval time.Duration
	remove := &cobra.Command{
		Use:   "remove <shard>",
		Short: "Start or follow a shard's removal (state started, ongoing, completed)",
		Long: "Start or follow a shard's removal with removeShard. The first call marks the shard\n" +
			"draining (started); later calls report what remains (ongoing); the call that finds\n" +
			"no chunk and no database left removes the shard (completed). With --wait, psdb\n" +
			"repeats the call every --interval, printing one progress line per call on stderr,\n" +
			"until completed or --wait-timeout.",
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return f.run(c, func(ctx context.Context, cl *admin.Client) (admin.Result, error) {
				if !wait {
					return cl.RemoveShard(ctx, args[0])
				}
				return cl.WaitRemoved(ctx, args[0], interval, waitTimeout, func(p admin.RemoveProgress) {
					fmt.Fprintln(c.ErrOrStderr(), p.Line())
				})
			})
		},
	}
	remove.Flags().BoolVar(&wait, "wait", false, "repeat removeShard until the removal completes")
	remove.Flags().DurationVar(&waitTimeout, "wait-timeout", 10*time.Minute, "give up waiting after this long")
	remove.Flags().DurationVar(&interval, "interval", time.Second, "time between two removeShard calls with --wait")
	var to string
	movePrimary := &cobra.Command{
		Use:   "move-primary <db> --to <shard>",
		Short: "Move a database's primary shard, with its unsharded collections (movePrimary)",
		Long: "Move a database's unsharded collections to another shard and make it the database's\n" +
			"primary, with movePrimary: what removeShard's dbsToMove asks for. Writes to the\n" +
			"database's unsharded collections wait while they are copied.",
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if to == "" {
				return fmt.Errorf("move-primary needs --to <shard>")
			}
			return f.run(c, func(ctx context.Context, cl *admin.Client) (admin.Result, error) {
				return cl.MovePrimary(ctx, args[0], to)
			})
		},
	}
	movePrimary.Flags().StringVar(&to, "to", "", "the shard to become the database's primary")
	return group("shards", "List, add and remove shards, and move database primaries", list, add, remove, movePrimary)
}

func newAdminBalancerCmd(f *adminFlags) *cobra.Command {
	set := func(on bool, use, short string) *cobra.Command {
		return &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				return f.run(c, func(ctx context.Context, cl *admin.Client) (admin.Result, error) { return cl.SetBalancer(ctx, on) })
			},
		}
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show every field of balancerStatus",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return f.run(c, func(ctx context.Context, cl *admin.Client) (admin.Result, error) { return cl.BalancerStatus(ctx) })
		},
	}
	return group("balancer", "Start, stop and inspect the balancer",
		set(true, "start", "Enable the balancer (balancerStart)"), set(false, "stop", "Disable the balancer (balancerStop)"), status)
}

// parseKeyFlag parses a key document flag, naming the flag on error.
func parseKeyFlag(name, s string) (bson.Raw, error) {
	d, err := admin.ParseDoc(s)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", name, err)
	}
	return d, nil
}

func newAdminChunksCmd(f *adminFlags) *cobra.Command {
	var listNS, listShard string
	list := &cobra.Command{
		Use:   "list",
		Short: "List chunks (ns, min, max, shard) and the number per shard",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return f.run(c, func(ctx context.Context, cl *admin.Client) (admin.Result, error) {
				return cl.Chunks(ctx, listNS, listShard)
			})
		},
	}
	list.Flags().StringVar(&listNS, "ns", "", "only the chunks of this collection (db.coll)")
	list.Flags().StringVar(&listShard, "shard", "", "only the chunks on this shard")

	var moveNS, moveFind, moveTo string
	var waitForDelete bool
	move := &cobra.Command{
		Use:   "move --ns db.coll --find '{k: 1}' --to <shard>",
		Short: "Move the chunk holding a shard key to a shard (moveChunk)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			find, err := parseKeyFlag("find", moveFind)
			if err != nil {
				return err
			}
			return f.run(c, func(ctx context.Context, cl *admin.Client) (admin.Result, error) {
				return cl.MoveChunk(ctx, moveNS, find, moveTo, waitForDelete)
			})
		},
	}
	move.Flags().StringVar(&moveNS, "ns", "", "collection (db.coll)")
	move.Flags().StringVar(&moveFind, "find", "", "a shard key inside the chunk, as relaxed extended JSON ('{k: 1}')")
	move.Flags().StringVar(&moveTo, "to", "", "target shard")
	move.Flags().BoolVar(&waitForDelete, "wait-for-delete", false, "return only once the source shard deleted the moved documents (_waitForDelete)")
	for _, n := range []string{"ns", "find", "to"} {
		_ = move.MarkFlagRequired(n)
	}

	var splitNS, splitMiddle, splitFind string
	split := &cobra.Command{
		Use:   "split --ns db.coll (--middle '{k: 10}' | --find '{k: 10}')",
		Short: "Split a chunk at a key (--middle) or at the median of the chunk holding a key (--find)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var middle, find bson.Raw
			var err error
			switch {
			case (splitMiddle == "") == (splitFind == ""):
				return fmt.Errorf("chunks split needs exactly one of --middle and --find")
			case splitMiddle != "":
				middle, err = parseKeyFlag("middle", splitMiddle)
			default:
				find, err = parseKeyFlag("find", splitFind)
			}
			if err != nil {
				return err
			}
			return f.run(c, func(ctx context.Context, cl *admin.Client) (admin.Result, error) {
				return cl.Split(ctx, splitNS, middle, find)
			})
		},
	}
	split.Flags().StringVar(&splitNS, "ns", "", "collection (db.coll)")
	split.Flags().StringVar(&splitMiddle, "middle", "", "split point, a full shard key ('{k: 10}')")
	split.Flags().StringVar(&splitFind, "find", "", "a shard key inside the chunk to split at its median")
	_ = split.MarkFlagRequired("ns")
	return group("chunks", "List, move and split chunks", list, move, split)
}

func newAdminRSCmd(f *adminFlags) *cobra.Command {
	status := &cobra.Command{
		Use:   "status [shard]",
		Short: "Replica-set status of every shard (or one): a row per member",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			shard := ""
			if len(args) == 1 {
				shard = args[0]
			}
			return f.run(c, func(ctx context.Context, cl *admin.Client) (admin.Result, error) { return cl.ReplStatus(ctx, shard) })
		},
	}
	var secs int64
	var force bool
	var wait time.Duration
	stepdown := &cobra.Command{
		Use:   "stepdown <shard>",
		Short: "Ask a shard's primary to step down (replSetStepDown through the router)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if secs < 0 {
				return fmt.Errorf("--secs must not be negative")
			}
			return f.run(c, func(ctx context.Context, cl *admin.Client) (admin.Result, error) {
				return cl.StepDown(ctx, args[0], secs, force, wait)
			})
		},
	}
	stepdown.Flags().Int64Var(&secs, "secs", 60, "seconds the old primary does not stand for election")
	stepdown.Flags().BoolVar(&force, "force", false, "step down even without a caught-up secondary")
	stepdown.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to wait for a new primary to report (0: do not wait)")
	return group("rs", "Replica-set status and step-down of the shards", status, stepdown)
}

func newAdminSummaryCmd(f *adminFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "summary",
		Short: "Cluster summary: shards, databases, sharded collections, balancer, routers",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return f.run(c, func(ctx context.Context, cl *admin.Client) (admin.Result, error) { return cl.Summary(ctx) })
		},
	}
}
