package admin

import (
	"context"
	"fmt"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// BalancerStatus is balancerStatus's answer, every field as the router
// sent it (mode, inBalancerRound, numBalancerRounds and whatever else the
// router reports), rendered generically.
type BalancerStatus struct{ Fields }

// Mode is the balancer's mode ("full" or "off"), "" when not reported.
func (s BalancerStatus) Mode() string {
	m, _ := s.Lookup("mode").StringValueOK()
	return m
}

// BalancerStatus runs balancerStatus.
func (c *Client) BalancerStatus(ctx context.Context) (BalancerStatus, error) {
	raw, err := c.Run(ctx, bson.D{{Key: "balancerStatus", Value: 1}})
	if err != nil {
		return BalancerStatus{}, err
	}
	f, err := NewFields(raw)
	return BalancerStatus{f}, err
}

// BalancerChange is the answer of `balancer start|stop`: the command run
// and the status read after it.
type BalancerChange struct {
	Command string         `json:"command"`
	Status  BalancerStatus `json:"status"`
}

// WriteTable implements Result.
func (b BalancerChange) WriteTable(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "%s: ok\n", b.Command); err != nil {
		return err
	}
	return b.Status.WriteTable(w)
}

// SetBalancer runs balancerStart (on) or balancerStop, then
// balancerStatus.
func (c *Client) SetBalancer(ctx context.Context, on bool) (BalancerChange, error) {
	cmd := "balancerStop"
	if on {
		cmd = "balancerStart"
	}
	if _, err := c.Run(ctx, bson.D{{Key: cmd, Value: 1}}); err != nil {
		return BalancerChange{}, err
	}
	st, err := c.BalancerStatus(ctx)
	if err != nil {
		return BalancerChange{}, err
	}
	return BalancerChange{Command: cmd, Status: st}, nil
}
