// Command ringfence is the Ringfence CLI and daemon (`ringfence serve`).
package main

import (
	"os"

	"github.com/ringfence/ringfence/internal/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
