// Command go-app is a minimal HTTP service answering "Hi!" with an optional delay. It exists to exercise
// zero-downtime deploys of a second language next to intake, so its shutdown is the part that matters.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	// Take over SIGTERM before anything can reach us: a signal arriving between listen and Notify would
	// otherwise kill the process with in-flight requests.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)

	cfg, addr, err := configFromEnv(os.Getenv)
	if err != nil {
		log.Fatalf("go-app: %v", err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatalf("go-app: listen: %v", err)
	}
	srv := NewServer(cfg)
	log.Printf("go-app: listening on %s", l.Addr())

	done := make(chan error, 1)
	go func() {
		s := <-sig
		log.Printf("go-app: %s received, draining", s)
		done <- srv.Shutdown(context.Background())
	}()

	if err := srv.Serve(l); err != nil {
		log.Fatalf("go-app: serve: %v", err)
	}
	// Serve returns as soon as the listener closes; wait for in-flight requests before exiting.
	if err := <-done; err != nil {
		log.Printf("go-app: shutdown: %v", err)
		os.Exit(1)
	}
	log.Printf("go-app: stopped")
}

// configFromEnv reads PORT, HOST, MAX_DELAY_MS, SHUTDOWN_DELAY_MS, SHUTDOWN_TIMEOUT_MS and APP_VERSION.
func configFromEnv(getenv func(string) string) (Config, string, error) {
	ms := func(name string, def int) (time.Duration, error) {
		raw := getenv(name)
		if raw == "" {
			return time.Duration(def) * time.Millisecond, nil
		}
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s=%q is not valid: set whole milliseconds >= 0", name, raw)
		}
		return time.Duration(n) * time.Millisecond, nil
	}
	var cfg Config
	var err error
	if cfg.MaxDelay, err = ms("MAX_DELAY_MS", 0); err != nil {
		return cfg, "", err
	}
	if cfg.ShutdownDelay, err = ms("SHUTDOWN_DELAY_MS", 0); err != nil {
		return cfg, "", err
	}
	if cfg.ShutdownTimeout, err = ms("SHUTDOWN_TIMEOUT_MS", 25000); err != nil {
		return cfg, "", err
	}
	cfg.Version = getenv("APP_VERSION")
	port := getenv("PORT")
	if port == "" {
		port = "8080"
	}
	return cfg, net.JoinHostPort(getenv("HOST"), port), nil
}
