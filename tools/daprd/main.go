// Command daprd is the Dapr sidecar this project runs beside each service.
//
// It is upstream daprd (github.com/dapr/dapr/cmd/daprd/app, built with
// -tags stablecomponents) plus one registration: the SQLite name resolver,
// which upstream ships only under -tags allcomponents. mDNS, the default
// self-hosted resolver, multicasts beyond loopback; SQLite keeps service
// discovery in a file on this machine.
package main

import (
	nrsqlite "github.com/dapr/components-contrib/nameresolution/sqlite"
	"github.com/dapr/dapr/cmd/daprd/app"
	nrLoader "github.com/dapr/dapr/pkg/components/nameresolution"
)

func main() {
	nrLoader.DefaultRegistry.RegisterComponent(nrsqlite.NewResolver, "sqlite")
	app.Run()
}
