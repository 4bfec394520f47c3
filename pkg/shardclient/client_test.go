package shardclient

import (
	"context"
	"net"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// TestNoServer: calls to an address nobody serves fail fast with the
// retryable HostUnreachable, never hang. (The client against a real
// shardd is tested in shardd/server and shardd.)
func TestNoServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tests := []struct {
		name string
		call func() error
	}{
		{"health", func() error { return CheckHealth(ctx, addr) }},
		{"insert", func() error { _, err := c.Insert(ctx, "a.b", []bson.Raw{{5, 0, 0, 0, 0}}, WriteOptions{}); return err }},
		{"find", func() error { _, err := c.Find(ctx, "a.b", Find{}); return err }},
		{"count", func() error { _, err := c.Count(ctx, "a.b", nil, 0, 0); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if code := mongoerr.CodeOf(err); code != mongoerr.HostUnreachable || !code.Retryable() {
				t.Fatalf("err %v: code %s, want retryable HostUnreachable", err, code)
			}
		})
	}
	wctx, wcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer wcancel()
	if err := c.WaitHealthy(wctx); err == nil {
		t.Fatal("WaitHealthy succeeded with no server")
	}
}

func TestValue(t *testing.T) {
	b, _ := bson.Marshal(bson.D{{Key: "v", Value: "x"}})
	tests := []struct {
		name string
		in   []byte
		want string
		code mongoerr.Code
	}{
		{"empty", nil, "", 0},
		{"string", b, `"x"`, 0},
		{"no v", []byte{5, 0, 0, 0, 0}, "", mongoerr.InvalidBSON},
		{"garbage", []byte{1, 2, 3}, "", mongoerr.InvalidBSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := value(tt.in)
			if mongoerr.CodeOf(err) != tt.code {
				t.Fatalf("err %v, want code %d", err, tt.code)
			}
			if err == nil && tt.want != "" && v.String() != tt.want {
				t.Fatalf("value %s, want %s", v, tt.want)
			}
		})
	}
}
