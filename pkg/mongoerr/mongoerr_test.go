package mongoerr

import (
	"errors"
	"fmt"
	"testing"
)

func TestCodes(t *testing.T) {
	cases := []struct {
		code       Code
		name       string
		num        int32
		retryable  bool
		notPrimary bool
	}{
		{BadValue, "BadValue", 2, false, false},
		{CommandNotFound, "CommandNotFound", 59, false, false},
		{DuplicateKey, "DuplicateKey", 11000, false, false},
		{NotWritablePrimary, "NotWritablePrimary", 10107, true, true},
		{StaleConfig, "StaleConfig", 13388, false, false},
		{Code(16410), "Location16410", 16410, false, false},
	}
	for _, c := range cases {
		if c.code.Name() != c.name || int32(c.code) != c.num || c.code.Retryable() != c.retryable || c.code.NotPrimary() != c.notPrimary {
			t.Errorf("%d: got %s retryable=%v notPrimary=%v", c.num, c.code.Name(), c.code.Retryable(), c.code.NotPrimary())
		}
	}
	if !StaleConfig.StaleConfig() {
		t.Error("StaleConfig must be a stale-config code")
	}
}

func TestWrapAndAs(t *testing.T) {
	base := errors.New("disk on fire")
	err := fmt.Errorf("insert into db.c: %w", Wrap(base, InternalError, "write failed"))
	e, ok := As(err)
	if !ok || e.Code != InternalError || !errors.Is(err, base) {
		t.Fatalf("As/Is lost the chain: %v", err)
	}
	if CodeOf(errors.New("plain")) != InternalError || CodeOf(nil) != 0 {
		t.Fatal("CodeOf of plain/nil errors")
	}
	if !errors.Is(New(DuplicateKey, "E11000 duplicate key"), &Error{Code: DuplicateKey}) {
		t.Fatal("errors.Is by code")
	}
	if got := New(BadValue, "unknown operator: %s", "$foo").Error(); got != "BadValue (2): unknown operator: $foo" {
		t.Fatalf("Error() = %q", got)
	}
}
