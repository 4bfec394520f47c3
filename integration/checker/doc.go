// Package checker drives concurrent load through a MongoDB-compatible
// endpoint and checks afterwards that the cluster kept its promises: every
// acknowledged write is present exactly once, nothing appears that was never
// written, and no client ever read a counter going back in time. It is the
// history checker of the replica-set, sharding and chaos tests.
//
// It owns three things: the workload (Run), the recorded History of every
// operation with its outcome and timestamps, and the verdict (Verify,
// VerifyViews) with its Report. It talks to the server only through the
// small Store interface; MongoStore adapts a *mongo.Collection of the official
// Go driver, and the unit tests use an in-memory store with fault injection.
//
// It must never decide that a write whose outcome is unknown was lost or
// applied: a network error or timeout leaves a write indeterminate, and an
// indeterminate write may be present or absent (but never twice). It must
// never leave a goroutine behind: Run returns only after every worker ended.
//
// Typical use in an integration or chaos test:
//
//	coll := client.Database("chk").Collection("history",
//		options.Collection().SetWriteConcern(writeconcern.Majority()).
//			SetReadPreference(readpref.Primary()))
//	store := checker.NewMongoStore(coll) // client built with retryable writes (the default)
//
//	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
//	defer cancel()
//	done := make(chan struct{})
//	var hist *checker.History
//	var runErr error
//	go func() {
//		defer close(done)
//		hist, runErr = checker.Run(ctx, store, checker.Workload{
//			Writers: 8, Readers: 4, Duration: 20 * time.Second, KeyPrefix: "kill-primary",
//		})
//	}()
//	// ... inject faults: cluster.Primary().Kill(), wait, restart ...
//	<-done
//	if runErr != nil {
//		t.Fatal(runErr)
//	}
//
//	// One final view through the router, and one per member if wanted.
//	view, err := checker.Collect(ctx, "router", store, hist)
//	if err != nil {
//		t.Fatal(err)
//	}
//	rep := checker.VerifyViews(ctx, hist, view)
//	rep.Scenario, rep.Faults = "primary SIGKILL", "10 kills"
//	t.Log(rep.String())
//	if !rep.OK() {
//		t.Fatalf("history check failed:\n%s", rep)
//	}
//	// rep.Table() is the docs/CHAOS.md row; TableHeader() its header.
package checker
