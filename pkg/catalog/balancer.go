package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// BalancerSettings are the balancer's settings. The zero value is not the
// default; use DefaultBalancerSettings.
type BalancerSettings struct {
	Enabled bool `json:"enabled"`
	// WindowStart and WindowEnd ("HH:MM", local time of the leader) limit
	// when migrations may start; both empty means always.
	WindowStart string `json:"windowStart,omitempty"`
	WindowEnd   string `json:"windowEnd,omitempty"`
	// Threshold is the chunk-count difference between the most and least
	// loaded shard above which the balancer moves chunks.
	Threshold int `json:"threshold"`
	// MaxConcurrent bounds migrations running at once (each shard takes
	// part in at most one anyway).
	MaxConcurrent int `json:"maxConcurrent"`
	// ChunkSizeBytes is the size past which a chunk is split.
	ChunkSizeBytes int64 `json:"chunkSizeBytes"`
	// FileChunkSizeBytes and FileThreshold are the cluster.yaml values
	// last applied (ApplyBalancerConfig): a changed file value replaces
	// the setting, an unchanged one leaves a value set since (an update
	// of config.settings) alone.
	FileChunkSizeBytes int64 `json:"fileChunkSizeBytes,omitempty"`
	FileThreshold      int   `json:"fileThreshold,omitempty"`
}

// DefaultBalancerSettings are used while none are stored.
func DefaultBalancerSettings() BalancerSettings {
	return BalancerSettings{Enabled: true, Threshold: 2, MaxConcurrent: 4, ChunkSizeBytes: 128 << 20}
}

func validClock(s string) bool {
	if s == "" {
		return true
	}
	_, err := time.Parse("15:04", s)
	return err == nil
}

// GetBalancerSettings returns the stored settings or the defaults.
func (c *Catalog) GetBalancerSettings(ctx context.Context) (BalancerSettings, error) {
	s := DefaultBalancerSettings()
	_, err := c.getJSON(ctx, c.balancerSettingsKey(), &s)
	if err != nil && err != ErrNotFound {
		return BalancerSettings{}, err
	}
	return s, nil
}

// Validate checks the settings as SetBalancerSettings stores them: the
// window empty or two HH:MM times, the counts and the chunk size positive.
// Errors are BadValue (ErrInvalid).
func (s BalancerSettings) Validate() error {
	if !validClock(s.WindowStart) || !validClock(s.WindowEnd) || (s.WindowStart == "") != (s.WindowEnd == "") {
		return invalid("balancer window must be two HH:MM times, got %q-%q", s.WindowStart, s.WindowEnd)
	}
	if s.Threshold < 1 || s.MaxConcurrent < 1 || s.ChunkSizeBytes < 1 {
		return invalid("balancer threshold, maxConcurrent and chunkSizeBytes must be positive")
	}
	return nil
}

// SetBalancerSettings stores the settings.
func (c *Catalog) SetBalancerSettings(ctx context.Context, s BalancerSettings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if _, err := c.cli.Put(ctx, c.balancerSettingsKey(), mustJSON(s)); err != nil {
		return fmt.Errorf("etcd put balancer settings: %w", err)
	}
	return nil
}

// Leadership is a held balancer leadership. Ctx is cancelled the moment
// leadership is lost (session lease expired) or resigned: run the leader's
// work under it. Always call Resign when done, also after a loss: it ends
// the session's keepalive goroutine. Safe for concurrent use.
type Leadership struct {
	Ctx    context.Context
	cancel context.CancelCauseFunc
	sess   *concurrency.Session
	elec   *concurrency.Election
	stop   chan struct{}
}

// Resign gives up leadership and ends the session.
func (l *Leadership) Resign(ctx context.Context) error {
	l.cancel(errors.New("balancer leadership resigned"))
	<-l.stop
	err := l.elec.Resign(ctx)
	if cerr := l.sess.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("resign balancer leadership: %w", err)
	}
	return nil
}

// CampaignBalancer blocks until id becomes balancer leader (an etcd
// election under <root>/balancer/leader with a session lease of ttl) or
// ctx is done (then it returns ctx's error and leaves the election).
func (c *Catalog) CampaignBalancer(ctx context.Context, id string, ttl time.Duration) (*Leadership, error) {
	sess, err := concurrency.NewSession(c.cli, concurrency.WithTTL(int(ttlSeconds(ttl))))
	if err != nil {
		return nil, fmt.Errorf("etcd session for balancer election: %w", err)
	}
	elec := concurrency.NewElection(sess, c.balancerLeaderPrefix())
	if err := elec.Campaign(ctx, id); err != nil {
		_ = sess.Close()
		return nil, fmt.Errorf("balancer campaign: %w", err)
	}
	lctx, cancel := context.WithCancelCause(context.Background())
	l := &Leadership{Ctx: lctx, cancel: cancel, sess: sess, elec: elec, stop: make(chan struct{})}
	go func() {
		defer close(l.stop)
		select {
		case <-sess.Done():
			cancel(errors.New("balancer leadership lost: session lease expired"))
		case <-lctx.Done():
		}
	}()
	c.log.Info().Str("router", id).Msg("balancer leadership acquired")
	return l, nil
}

// BalancerLeader returns the current leader's id ("" if none).
func (c *Catalog) BalancerLeader(ctx context.Context) (string, error) {
	resp, err := c.cli.Get(ctx, c.balancerLeaderPrefix()+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("etcd get balancer leader: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// BalancerConfig is the part of the balancer settings that cluster.yaml
// owns (sharding.chunkSize, sharding.imbalanceThreshold,
// sharding.balancerEnabled).
type BalancerConfig struct {
	ChunkSizeBytes int64
	Threshold      int
	// EnabledIfNew is the enabled flag stored when no settings exist
	// yet; afterwards only balancerStart and balancerStop change it.
	EnabledIfNew bool
}

// ApplyBalancerConfig writes the file's settings into the stored ones in
// one compare-and-swap; the config server calls it at every start. The
// chunk size and threshold are written when the file's value differs from
// the one applied last time (so an edited cluster.yaml takes effect on
// restart, and a value set since with an update of config.settings
// survives a restart with an unchanged file); enabled only into a new
// catalog. The window and maxConcurrent are never touched.
func (c *Catalog) ApplyBalancerConfig(ctx context.Context, bc BalancerConfig) (BalancerSettings, error) {
	for {
		s := DefaultBalancerSettings()
		s.Enabled = bc.EnabledIfNew
		rev, err := c.getJSON(ctx, c.balancerSettingsKey(), &s)
		if err != nil && err != ErrNotFound {
			return BalancerSettings{}, err
		}
		if bc.ChunkSizeBytes > 0 && bc.ChunkSizeBytes != s.FileChunkSizeBytes {
			s.ChunkSizeBytes, s.FileChunkSizeBytes = bc.ChunkSizeBytes, bc.ChunkSizeBytes
		}
		if bc.Threshold > 0 && bc.Threshold != s.FileThreshold {
			s.Threshold, s.FileThreshold = bc.Threshold, bc.Threshold
		}
		if err := s.Validate(); err != nil {
			return BalancerSettings{}, err
		}
		key := c.balancerSettingsKey()
		cmp := clientv3.Compare(clientv3.ModRevision(key), "=", rev) // 0: absent
		resp, err := c.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, mustJSON(s))).Commit()
		if err != nil {
			return BalancerSettings{}, fmt.Errorf("etcd txn balancer settings: %w", err)
		}
		if resp.Succeeded {
			return s, nil
		}
	}
}
