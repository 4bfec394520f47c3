package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// CreateUser stores a user. ErrExists (51003) if it exists.
func (c *Catalog) CreateUser(ctx context.Context, u User) error {
	if u.User == "" {
		return invalid("user name is empty")
	}
	if err := ValidateDBName(u.DB); err != nil {
		return err
	}
	u.Roles = slices.Clone(u.Roles)
	key := c.userKey(u.DB, u.User)
	resp, err := c.commit(ctx, "create user", c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, mustJSON(u))))
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return coded(ErrExists, userExists, "user %q@%s already exists", u.User, u.DB)
	}
	return nil
}

// GetUser returns a user; ErrNotFound (UserNotFound) if absent.
func (c *Catalog) GetUser(ctx context.Context, db, user string) (User, error) {
	var u User
	rev, err := c.getJSON(ctx, c.userKey(db, user), &u)
	if err == ErrNotFound {
		return User{}, coded(ErrNotFound, mongoerr.UserNotFound, "could not find user %q for db %q", user, db)
	}
	if err != nil {
		return User{}, err
	}
	u.ModRevision = rev
	return u, nil
}

// ListUsers returns the users of db.
func (c *Catalog) ListUsers(ctx context.Context, db string) ([]User, error) {
	resp, err := c.cli.Get(ctx, c.usersPrefix(db), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcd list users: %w", err)
	}
	out := make([]User, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var u User
		if err := json.Unmarshal(kv.Value, &u); err != nil {
			return nil, corrupt(string(kv.Key), err)
		}
		u.ModRevision = kv.ModRevision
		out = append(out, u)
	}
	return out, nil
}

// DeleteUser removes a user; ErrNotFound (UserNotFound) if absent.
func (c *Catalog) DeleteUser(ctx context.Context, db, user string) error {
	resp, err := c.cli.Delete(ctx, c.userKey(db, user))
	if err != nil {
		return fmt.Errorf("etcd delete user: %w", err)
	}
	if resp.Deleted == 0 {
		return coded(ErrNotFound, mongoerr.UserNotFound, "could not find user %q for db %q", user, db)
	}
	return nil
}
