package server

import (
	"context"
	"runtime"
	"runtime/debug"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/wire"
)

// ServerVersion is the MongoDB version the router answers as. It is a
// plain release number: tools compare it with semver ranges, and a
// pre-release suffix ("7.0.0-psdb") would sort below 7.0.0 and fail
// checks such as ">=7.0.0". PSDB identifies itself in gitVersion and the
// psdb field of buildInfo instead.
const ServerVersion = "7.0.0"

// serverVersionArray is ServerVersion as buildInfo's versionArray.
var serverVersionArray = bson.A{int32(7), int32(0), int32(0), int32(0)}

func init() {
	register(Command{
		Name:    "buildInfo",
		Aliases: []string{"buildinfo"},
		Help:    "the server's version and build: version, gitVersion, versionArray, bits, maxBsonObjectSize",
		Handler: handleBuildInfo,
	})
}

func handleBuildInfo(context.Context, *Server, *Request) (bson.Raw, error) {
	return okReply(
		bson.E{Key: "version", Value: ServerVersion},
		bson.E{Key: "gitVersion", Value: "psdb-" + vcsRevision()},
		bson.E{Key: "modules", Value: bson.A{}},
		bson.E{Key: "allocator", Value: "system"},
		bson.E{Key: "javascriptEngine", Value: "none"},
		bson.E{Key: "sysInfo", Value: "deprecated"},
		bson.E{Key: "versionArray", Value: serverVersionArray},
		bson.E{Key: "buildEnvironment", Value: bson.D{
			{Key: "distmod", Value: ""},
			{Key: "distarch", Value: mongoArch()},
			{Key: "target_arch", Value: mongoArch()},
			{Key: "target_os", Value: runtime.GOOS},
		}},
		bson.E{Key: "bits", Value: int32(64)},
		bson.E{Key: "debug", Value: false},
		bson.E{Key: "maxBsonObjectSize", Value: int32(wire.MaxBSONObjectSize)},
		bson.E{Key: "psdb", Value: bson.D{
			{Key: "revision", Value: vcsRevision()},
			{Key: "goVersion", Value: runtime.Version()},
		}},
	)
}

// vcsRevision is the commit the binary was built from, as recorded by the
// Go toolchain, or "unknown" (tests, builds outside a repository).
func vcsRevision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// mongoArch names the CPU architecture as MongoDB's builds do.
func mongoArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}
