package checker

import (
	"context"
	"fmt"
	"time"
)

// ExampleRun shows the shape of a checked test. Against a real cluster the
// store is NewMongoStore(coll) on a collection with w:"majority" through a
// client with retryable writes, faults are injected while Run works, and
// Collect is called once per router or replica-set member.
func ExampleRun() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store := newMemStore(faults{errAfterApplyAt: 10}) // a write applied, then the connection dropped

	hist, err := Run(ctx, store, Workload{Writers: 4, Readers: 2, MaxOps: 300, KeyPrefix: "example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	view, err := Collect(ctx, "router", store, hist)
	if err != nil {
		fmt.Println(err)
		return
	}
	rep := VerifyViews(ctx, hist, view)
	rep.Scenario, rep.Faults = "connection drop", "1 reset"
	fmt.Println("ok:", rep.OK())
	fmt.Println("acked:", len(rep.Acked), "indeterminate:", len(rep.Indeterminate), "lost:", len(rep.Lost))
	fmt.Println("errors:", rep.ErrorsByCode)
	// Output:
	// ok: true
	// acked: 199 indeterminate: 1 lost: 0
	// errors: map[network:1]
}
