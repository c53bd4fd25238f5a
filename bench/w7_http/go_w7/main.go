// W7, the Go peer: net/http serving "Hello, World!" (HTTP/1.1 keep-alive,
// Go sets TCP_NODELAY on every connection) under GOMAXPROCS=1, so that it
// runs Go code on one core like the others. Runs until killed.
//
//	go_w7 PORT
package main

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go_w7 PORT")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(1)
	body := []byte("Hello, World!")
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Args[1], nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
