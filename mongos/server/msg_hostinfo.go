package server

import (
	"context"
	"runtime"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func init() {
	register(Command{
		Name:    "hostInfo",
		Help:    "the host the router runs on: hostname, CPU count and architecture, operating system",
		Handler: handleHostInfo,
	})
}

func handleHostInfo(_ context.Context, s *Server, _ *Request) (bson.Raw, error) {
	return okReply(
		bson.E{Key: "system", Value: bson.D{
			{Key: "currentTime", Value: bson.NewDateTimeFromTime(s.opts.Now())},
			{Key: "hostname", Value: s.host},
			{Key: "cpuAddrSize", Value: int32(64)},
			{Key: "numCores", Value: int32(runtime.NumCPU())},
			{Key: "cpuArch", Value: mongoArch()},
			{Key: "numaEnabled", Value: false},
		}},
		bson.E{Key: "os", Value: bson.D{
			{Key: "type", Value: osType()},
			{Key: "name", Value: runtime.GOOS},
		}},
		bson.E{Key: "extra", Value: bson.D{}},
	)
}

// osType is hostInfo's os.type as MongoDB spells it.
func osType() string {
	switch runtime.GOOS {
	case "linux":
		return "Linux"
	case "darwin":
		return "Darwin"
	case "windows":
		return "Windows"
	}
	return runtime.GOOS
}
