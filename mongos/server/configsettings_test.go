package server

import (
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
)

func TestApplySettingsUpdate(t *testing.T) {
	def := catalog.DefaultBalancerSettings()
	mk := func(d bson.D) bson.Raw {
		b, err := bson.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	set := func(f string, v any) bson.Raw { return mk(bson.D{{Key: "$set", Value: bson.D{{Key: f, Value: v}}}}) }
	window := bson.D{{Key: "start", Value: "23:00"}, {Key: "stop", Value: "06:00"}}
	withWindow := def
	withWindow.WindowStart, withWindow.WindowEnd = "23:00", "06:00"
	stopped := def
	stopped.Enabled = false
	small := def
	small.ChunkSizeBytes = 64 << 20
	for _, tc := range []struct {
		name   string
		from   catalog.BalancerSettings
		id     string
		update bson.Raw
		want   catalog.BalancerSettings
		code   mongoerr.Code
	}{
		{"set window", def, "balancer", set("activeWindow", window), withWindow, 0},
		{"dotted window", def, "balancer", mk(bson.D{{Key: "$set", Value: bson.D{{Key: "activeWindow.start", Value: "23:00"}, {Key: "activeWindow.stop", Value: "06:00"}}}}), withWindow, 0},
		{"unset window", withWindow, "balancer", mk(bson.D{{Key: "$unset", Value: bson.D{{Key: "activeWindow", Value: true}}}}), def, 0},
		{"stopped", def, "balancer", set("stopped", true), stopped, 0},
		{"mode full", stopped, "balancer", set("mode", "full"), def, 0},
		{"chunk size", def, "chunksize", set("value", 64), small, 0},
		{"chunk size double", def, "chunksize", set("value", 64.0), small, 0},
		{"half a window", def, "balancer", set("activeWindow.start", "23:00"), def, mongoerr.BadValue},
		{"bad clock", def, "balancer", set("activeWindow", bson.D{{Key: "start", Value: "25:00"}, {Key: "stop", Value: "06:00"}}), def, mongoerr.BadValue},
		{"bad mode", def, "balancer", set("mode", "sometimes"), def, mongoerr.BadValue},
		{"chunk size too big", def, "chunksize", set("value", 2048), def, mongoerr.BadValue},
		{"unknown field", def, "balancer", set("_secondaryThrottle", true), def, mongoerr.BadValue},
		{"replacement", def, "balancer", mk(bson.D{{Key: "stopped", Value: true}}), def, mongoerr.FailedToParse},
		{"other operator", def, "balancer", mk(bson.D{{Key: "$inc", Value: bson.D{{Key: "x", Value: 1}}}}), def, mongoerr.FailedToParse},
		{"wrong type", def, "balancer", set("stopped", "yes"), def, mongoerr.TypeMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed, err := applySettingsUpdate(tc.from, tc.id, tc.update)
			if tc.code != 0 {
				if mongoerr.CodeOf(err) != tc.code {
					t.Fatalf("error %v, want code %d", err, tc.code)
				}
				return
			}
			if err != nil || got != tc.want || changed != (tc.from != tc.want) {
				t.Fatalf("got %+v changed=%v err=%v, want %+v", got, changed, err, tc.want)
			}
		})
	}
}

// MongoDB's documented way to set the balancer window and the chunk size
// works through the driver, and every other write to config is refused.
func TestConfigSettingsWrites(t *testing.T) {
	ac := startAdminCluster(t, 1)
	ctx := testCtx(t)
	settings := ac.cli.Database("config").Collection("settings")
	if _, err := settings.UpdateOne(ctx, bson.D{{Key: "_id", Value: "balancer"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "activeWindow", Value: bson.D{{Key: "start", Value: "23:00"}, {Key: "stop", Value: "06:00"}}}}}},
		options.UpdateOne().SetUpsert(true)); err != nil {
		t.Fatal(err)
	}
	if _, err := settings.UpdateOne(ctx, bson.D{{Key: "_id", Value: "chunksize"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "value", Value: 32}}}}); err != nil {
		t.Fatal(err)
	}
	bs, err := ac.cat.GetBalancerSettings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bs.WindowStart != "23:00" || bs.WindowEnd != "06:00" || bs.ChunkSizeBytes != 32<<20 {
		t.Fatalf("catalog settings after the updates: %+v", bs)
	}
	docs := ac.find(t, "settings", bson.D{{Key: "_id", Value: "balancer"}})
	if len(docs) != 1 || asM(docs[0]["activeWindow"])["start"] != "23:00" {
		t.Fatalf("config.settings balancer document: %v", docs)
	}
	_, err = settings.UpdateOne(ctx, bson.D{{Key: "_id", Value: "balancer"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "bogus", Value: 1}}}})
	var we mongo.WriteException
	if !errors.As(err, &we) || len(we.WriteErrors) != 1 || we.WriteErrors[0].Code != int(mongoerr.BadValue) {
		t.Fatalf("update of an unknown settings field: %v", err)
	}
	_, err = ac.cli.Database("config").Collection("chunks").UpdateOne(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}})
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != int32(mongoerr.InvalidNamespace) {
		t.Fatalf("update of config.chunks: %v, want InvalidNamespace", err)
	}
}
