package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the signal test run the real main() in a child process built from this test binary.
func TestMain(m *testing.M) {
	if os.Getenv("GO_APP_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func get(t *testing.T, h http.Handler, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec
}

func TestHiAndHealth(t *testing.T) {
	s := NewServer(Config{Version: "v1"})
	h := s.http.Handler
	if rec := get(t, h, "/"); rec.Code != 200 || rec.Body.String() != "Hi!\n" || rec.Header().Get("X-App-Version") != "v1" {
		t.Fatalf("GET / = %d %q %v", rec.Code, rec.Body.String(), rec.Header())
	}
	if rec := get(t, h, "/nope"); rec.Code != 404 {
		t.Fatalf("GET /nope = %d, want 404", rec.Code)
	}
	if rec := get(t, h, "/healthz"); rec.Code != 200 {
		t.Fatalf("GET /healthz = %d, want 200", rec.Code)
	}
	if rec := get(t, h, "/?delay=abc"); rec.Code != 400 {
		t.Fatalf("GET /?delay=abc = %d, want 400", rec.Code)
	}
	if rec := get(t, h, "/?delay=600001"); rec.Code != 400 {
		t.Fatalf("GET /?delay=600001 = %d, want 400", rec.Code)
	}
}

func TestDelay(t *testing.T) {
	s := NewServer(Config{})
	start := time.Now()
	if rec := get(t, s.http.Handler, "/?delay=150"); rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("answered after %v, want >= 150ms", d)
	}
	s = NewServer(Config{MaxDelay: 20 * time.Millisecond})
	for i := 0; i < 20; i++ {
		d, err := s.requestDelay(httptest.NewRequest(http.MethodGet, "/", nil))
		if err != nil || d < 0 || d >= 20*time.Millisecond {
			t.Fatalf("random delay %v %v out of [0,20ms)", d, err)
		}
	}
}

func TestDrainingTurnsReadinessOffAndClosesKeepAlive(t *testing.T) {
	s := NewServer(Config{ShutdownDelay: time.Hour, ShutdownTimeout: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = s.Shutdown(ctx) }()
	defer cancel()
	for !s.draining.Load() {
		time.Sleep(time.Millisecond)
	}
	if rec := get(t, s.http.Handler, "/healthz"); rec.Code != 503 {
		t.Fatalf("GET /healthz while draining = %d, want 503", rec.Code)
	}
	rec := get(t, s.http.Handler, "/")
	if rec.Code != 200 || rec.Header().Get("Connection") != "close" {
		t.Fatalf("GET / while draining = %d Connection=%q, want 200 and close", rec.Code, rec.Header().Get("Connection"))
	}
	if rec := get(t, s.http.Handler, "/livez"); rec.Code != 200 {
		t.Fatalf("GET /livez while draining = %d, want 200 (liveness must not kill a draining pod)", rec.Code)
	}
}

func TestShutdownWaitsForInFlight(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(Config{ShutdownTimeout: 5 * time.Second})
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()

	url := "http://" + l.Addr().String()
	result := make(chan string, 1)
	go func() {
		resp, err := http.Get(url + "/?delay=300")
		if err != nil {
			result <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		result <- string(b)
	}()
	waitInFlight(t, s)

	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := <-result; got != "Hi!\n" {
		t.Fatalf("in-flight request got %q, want Hi!", got)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := http.Get(url + "/"); err == nil {
		t.Fatal("a new request succeeded after shutdown")
	}
}

// waitInFlight waits until the server is inside the handler of a delayed request.
func waitInFlight(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.inFlight.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the delayed request never reached the handler")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSIGTERM runs the real binary entry point, sends SIGTERM while a long request is in flight and
// expects that request to complete and the process to exit 0.
func TestSIGTERM(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GO_APP_RUN_MAIN=1", "HOST=127.0.0.1", "PORT=0",
		"SHUTDOWN_DELAY_MS=200", "SHUTDOWN_TIMEOUT_MS=5000")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }() // no-op once it exited

	lines := bufio.NewScanner(stderr)
	addr := ""
	re := regexp.MustCompile(`listening on (\S+)`)
	for addr == "" && lines.Scan() {
		if m := re.FindStringSubmatch(lines.Text()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatal("child never said where it listens")
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }() // keep the pipe drained
	url := "http://" + addr

	// The child gets SIGTERM once the request is on the wire; its SHUTDOWN_DELAY_MS keeps the listener
	// open long enough for that connection to be accepted, which is what the delay is for.
	sent := make(chan struct{})
	result := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, url+"/?delay=700", nil)
		trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(sent) }}
		resp, err := http.DefaultClient.Do(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
		if err != nil {
			result <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		result <- fmt.Sprintf("close=%v|%s", resp.Close, b)
	}()
	select {
	case <-sent:
	case got := <-result:
		t.Fatalf("request ended before it was sent: %q", got)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Answered while draining, so it also tells the client to drop the connection.
	got := <-result
	if got != "close=true|Hi!\n" {
		t.Fatalf("in-flight request across SIGTERM got %q", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v, want status 0", err)
	}
}
