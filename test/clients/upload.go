// A real Go net/http client for test/http/refusals-reach-clients.test.ts (standard library only, built
// by the test). Reads a plan (JSON, see clients.ts) of uploads, POSTs each one `count` times, and
// prints one line per try: the upload's index and the status, or `ERR <error>`.
//
//	upload <plan.json>
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"syscall"
)

type upload struct {
	URL     string            `json:"url"`
	File    string            `json:"file"`
	Count   int               `json:"count"`
	Headers map[string]string `json:"headers"`
	Chunked bool              `json:"chunked"`
}

func main() {
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	var plan []upload
	if err := json.Unmarshal(raw, &plan); err != nil {
		panic(err)
	}
	client := &http.Client{}
	for i, u := range plan {
		body, err := os.ReadFile(u.File)
		if err != nil {
			panic(err)
		}
		for n := 0; n < u.Count; n++ {
			fmt.Println(i, try(client, u, body))
		}
	}
}

func try(client *http.Client, u upload, body []byte) string {
	var r io.Reader = bytes.NewReader(body)
	if u.Chunked {
		// A plain io.Reader hides the length, so net/http sends Transfer-Encoding: chunked.
		r = io.MultiReader(r)
	}
	req, err := http.NewRequest("POST", u.URL, r)
	if err != nil {
		panic(err)
	}
	for k, v := range u.Headers {
		req.Header.Set(k, v)
	}
	if u.Chunked {
		req.ContentLength = -1
	}
	res, err := client.Do(req)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return "ERR " + errno.Error()
		}
		return "ERR " + err.Error()
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return fmt.Sprint(res.StatusCode)
}
