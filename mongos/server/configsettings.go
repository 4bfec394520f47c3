package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
)

// Writes to config.settings: the one writable corner of the config
// database, because MongoDB's documented way to set the balancer's active
// window and the chunk size is an update of these documents:
//
//	db.settings.updateOne({_id: "balancer"}, {$set: {activeWindow: {start: "23:00", stop: "06:00"}}}, {upsert: true})
//	db.settings.updateOne({_id: "balancer"}, {$unset: {activeWindow: true}})
//	db.settings.updateOne({_id: "balancer"}, {$set: {stopped: true}})
//	db.settings.updateOne({_id: "chunksize"}, {$set: {value: 64}}, {upsert: true})   // MB
//
// Each update is translated into the catalog's balancer settings
// (applySettingsUpdate, pure) and stored with SetBalancerSettings; any
// other field or operator is refused with a clear error, never ignored.

// configSettingsNS is the writable namespace.
const configSettingsNS = configDBName + ".settings"

// handleConfigUpdate answers an update command on the config database.
func (s *Server) handleConfigUpdate(ctx context.Context, ns string, stmts []shardclient.UpdateStatement) (bson.Raw, error) {
	if ns != configSettingsNS {
		return ErrorReply(errConfigReadOnly(ns)), nil
	}
	_, _, cat, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	cur, err := cat.GetBalancerSettings(ctx)
	if err != nil {
		return ErrorReply(mongoerr.Wrap(err, mongoerr.HostUnreachable, "read the balancer settings: %v", err)), nil
	}
	next := cur
	out := &writeOutcome{}
	for i, st := range stmts {
		id, err := settingsID(st.Filter)
		if err == nil && st.Multi {
			err = mongoerr.New(mongoerr.InvalidOptions, "multi updates of config.settings are not supported")
		}
		var changed bool
		if err == nil {
			next, changed, err = applySettingsUpdate(next, id, st.Update)
		}
		if err != nil {
			me, ok := mongoerr.As(err)
			if !ok {
				me = mongoerr.New(mongoerr.InternalError, "%v", err)
			}
			out.errs = append(out.errs, shardclient.WriteError{Index: i, Err: me})
			break // ordered: the rest is not applied
		}
		out.n++
		if changed {
			out.nModified++
		}
	}
	if next != cur {
		if err := cat.SetBalancerSettings(ctx, next); err != nil {
			return ErrorReply(err), nil
		}
		s.wakeBalancer()
	}
	return out.reply(true)
}

// settingsID returns the _id a config.settings update's filter names.
func settingsID(filter bson.Raw) (string, error) {
	elems, err := filter.Elements()
	if err != nil || len(elems) != 1 || elems[0].Key() != "_id" {
		return "", mongoerr.New(mongoerr.BadValue, "an update of config.settings must select one document by _id (\"balancer\" or \"chunksize\"), got %s", filter)
	}
	id, ok := elems[0].Value().StringValueOK()
	if !ok || (id != "balancer" && id != "chunksize") {
		return "", mongoerr.New(mongoerr.BadValue, "config.settings has the documents \"balancer\" and \"chunksize\"; cannot update %s", elems[0].Value())
	}
	return id, nil
}

// applySettingsUpdate applies a $set/$unset update of config.settings
// document id to s and reports whether it changed anything.
func applySettingsUpdate(s catalog.BalancerSettings, id string, update bson.Raw) (catalog.BalancerSettings, bool, error) {
	ops, err := update.Elements()
	if err != nil || len(ops) == 0 {
		return s, false, mongoerr.New(mongoerr.FailedToParse, "an update of config.settings must be a document of $set/$unset")
	}
	before := s
	for _, op := range ops {
		if op.Key() != "$set" && op.Key() != "$unset" {
			return s, false, mongoerr.New(mongoerr.FailedToParse, "config.settings accepts $set and $unset updates only, not %s", op.Key())
		}
		fields, ok := op.Value().DocumentOK()
		if !ok {
			return s, false, mongoerr.New(mongoerr.FailedToParse, "%s of config.settings needs a document", op.Key())
		}
		fes, err := fields.Elements()
		if err != nil {
			return s, false, mongoerr.New(mongoerr.FailedToParse, "%s of config.settings: %v", op.Key(), err)
		}
		for _, f := range fes {
			if err := applySettingsField(&s, id, op.Key() == "$unset", f.Key(), f.Value()); err != nil {
				return before, false, err
			}
		}
	}
	if err := s.Validate(); err != nil {
		return before, false, err
	}
	return s, s != before, nil
}

func applySettingsField(s *catalog.BalancerSettings, id string, unset bool, key string, v bson.RawValue) error {
	str := func() (string, error) {
		x, ok := v.StringValueOK()
		if !ok {
			return "", mongoerr.New(mongoerr.TypeMismatch, "config.settings %s.%s must be a string", id, key)
		}
		return x, nil
	}
	switch id + "." + key {
	case "balancer.stopped":
		if unset {
			s.Enabled = true
			return nil
		}
		b, ok := v.BooleanOK()
		if !ok {
			return mongoerr.New(mongoerr.TypeMismatch, "config.settings balancer.stopped must be a boolean")
		}
		s.Enabled = !b
	case "balancer.mode":
		if unset {
			s.Enabled = true
			return nil
		}
		m, err := str()
		if err != nil {
			return err
		}
		switch m {
		case "full":
			s.Enabled = true
		case "off":
			s.Enabled = false
		default:
			return mongoerr.New(mongoerr.BadValue, "balancer mode must be \"full\" or \"off\", got %q", m)
		}
	case "balancer.activeWindow":
		if unset {
			s.WindowStart, s.WindowEnd = "", ""
			return nil
		}
		w, ok := v.DocumentOK()
		if !ok {
			return mongoerr.New(mongoerr.TypeMismatch, "config.settings balancer.activeWindow must be {start: \"HH:MM\", stop: \"HH:MM\"}")
		}
		start, _ := w.Lookup("start").StringValueOK()
		stop, _ := w.Lookup("stop").StringValueOK()
		s.WindowStart, s.WindowEnd = start, stop
	case "balancer.activeWindow.start", "balancer.activeWindow.stop":
		x := ""
		if !unset {
			var err error
			if x, err = str(); err != nil {
				return err
			}
		}
		if key == "activeWindow.start" {
			s.WindowStart = x
		} else {
			s.WindowEnd = x
		}
	case "chunksize.value":
		if unset {
			s.ChunkSizeBytes = catalog.DefaultBalancerSettings().ChunkSizeBytes
			return nil
		}
		mb, ok := v.AsInt64OK()
		if !ok {
			if f, fok := v.DoubleOK(); fok && f == float64(int64(f)) {
				mb, ok = int64(f), true
			}
		}
		if !ok || mb < 1 || mb > 1024 {
			return mongoerr.New(mongoerr.BadValue, "chunksize value must be a whole number of MB between 1 and 1024, got %s", v)
		}
		s.ChunkSizeBytes = mb << 20
	default:
		return mongoerr.New(mongoerr.BadValue, "config.settings %s has no field %q that PSDB can set (balancer: stopped, mode, activeWindow; chunksize: value)", id, key)
	}
	return nil
}
