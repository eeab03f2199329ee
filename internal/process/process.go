// Package process holds how pipe starts the programs it runs, where that
// differs between operating systems.
package process
