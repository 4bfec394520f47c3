package server

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func TestParseReplSetStepDown(t *testing.T) {
	cases := []struct {
		cmd  bson.D
		want replSetStepDownArgs
		code mongoerr.Code
	}{
		{cmd: bson.D{{Key: "replSetStepDown", Value: 30}, {Key: "shard", Value: "rs0"}}, want: replSetStepDownArgs{shard: "rs0", secs: 30}},
		{cmd: bson.D{{Key: "replSetStepDown", Value: 1}, {Key: "shard", Value: "rs0"}, {Key: "stepDownSecs", Value: int64(90)},
			{Key: "secondaryCatchUpPeriodSecs", Value: 5.0}, {Key: "force", Value: true}},
			want: replSetStepDownArgs{shard: "rs0", secs: 90, catchUp: 5, force: true}},
		{cmd: bson.D{{Key: "replSetStepDown", Value: nil}, {Key: "shard", Value: "rs1"}, {Key: "force", Value: 1}}, want: replSetStepDownArgs{shard: "rs1", force: true}},
		{cmd: bson.D{{Key: "replSetStepDown", Value: 30}}, code: mongoerr.BadValue},
		{cmd: bson.D{{Key: "replSetStepDown", Value: 30}, {Key: "shard", Value: 1}}, code: mongoerr.TypeMismatch},
		{cmd: bson.D{{Key: "replSetStepDown", Value: "x"}, {Key: "shard", Value: "rs0"}}, code: mongoerr.TypeMismatch},
		{cmd: bson.D{{Key: "replSetStepDown", Value: -1}, {Key: "shard", Value: "rs0"}}, code: mongoerr.BadValue},
		{cmd: bson.D{{Key: "replSetStepDown", Value: 1}, {Key: "shard", Value: "rs0"}, {Key: "force", Value: "yes"}}, code: mongoerr.TypeMismatch},
		{cmd: bson.D{{Key: "replSetStepDown", Value: 1}, {Key: "shard", Value: "rs0"}, {Key: "stepDownSecs", Value: 1.5}}, code: mongoerr.BadValue},
	}
	for _, c := range cases {
		raw, err := bson.Marshal(c.cmd)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseReplSetStepDown(raw)
		if c.code != 0 {
			if mongoerr.CodeOf(err) != c.code {
				t.Errorf("%v: error %v, want code %s", c.cmd, err, c.code.Name())
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%v: %+v, %v; want %+v", c.cmd, got, err, c.want)
		}
	}
}
