package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// maxRequestDelay caps ?delay= so a client cannot park a goroutine for ever.
const maxRequestDelay = 60 * time.Second

// Config is everything the server reads from its environment (see main.go).
type Config struct {
	// MaxDelay: requests without ?delay= sleep a random time in [0, MaxDelay) to simulate long requests.
	MaxDelay time.Duration
	// ShutdownDelay: after SIGTERM, keep serving (readiness 503) this long so load balancers notice.
	ShutdownDelay time.Duration
	// ShutdownTimeout: how long in-flight requests get to finish once the listener is closed.
	ShutdownTimeout time.Duration
	// Version is echoed in the X-App-Version header so a deploy can be watched from the outside.
	Version string
}

// Server answers "Hi!" and knows whether it is draining.
type Server struct {
	cfg      Config
	draining atomic.Bool
	inFlight atomic.Int64 // requests inside hi(); lets tests wait for an event instead of sleeping
	http     *http.Server
}

// NewServer builds the handler; Serve starts it on a listener.
func NewServer(cfg Config) *Server {
	s := &Server{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("/", s.hi)
	mux.HandleFunc("/healthz", s.healthz)
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	s.http = &http.Server{
		Handler:           s.withCommonHeaders(mux),
		ReadHeaderTimeout: 5 * time.Second,
		// Longer than any load balancer's upstream keep-alive timeout (ingress-nginx: 60 s), so the
		// server never closes an idle connection the balancer is about to reuse.
		IdleTimeout: 75 * time.Second,
	}
	return s
}

func (s *Server) withCommonHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Version != "" {
			w.Header().Set("X-App-Version", s.cfg.Version)
		}
		// While draining, ask every client (and proxy) to drop its keep-alive connection after this
		// response. Idle connections are not cut under a client's feet: each is closed after it
		// carries its next response, which is the race-free way to move HTTP/1.1 clients away.
		s.closeIfDraining(w)
		next.ServeHTTP(w, r)
	})
}

// closeIfDraining is also called right before a delayed response is written, since draining may have
// started while the request waited.
func (s *Server) closeIfDraining(w http.ResponseWriter) {
	if s.draining.Load() {
		w.Header().Set("Connection", "close")
	}
}

func (s *Server) hi(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	delay, err := s.requestDelay(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		// Shutdown does not cancel request contexts, so only a client that went away ends this early.
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
	s.closeIfDraining(w)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, "Hi!\n")
}

// requestDelay is ?delay=<ms> when given, otherwise a random share of MaxDelay.
func (s *Server) requestDelay(r *http.Request) (time.Duration, error) {
	if raw := r.URL.Query().Get("delay"); raw != "" {
		ms, err := strconv.Atoi(raw)
		d := time.Duration(ms) * time.Millisecond
		if err != nil || ms < 0 || d > maxRequestDelay {
			return 0, fmt.Errorf("delay must be whole milliseconds from 0 to %d", maxRequestDelay.Milliseconds())
		}
		return d, nil
	}
	if s.cfg.MaxDelay <= 0 {
		return 0, nil
	}
	return time.Duration(rand.Int63n(int64(s.cfg.MaxDelay))), nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	if s.draining.Load() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// Serve blocks until the listener is closed by Shutdown; that case is not an error.
func (s *Server) Serve(l net.Listener) error {
	if err := s.http.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown drains in the order a load balancer needs: readiness off, keep serving for ShutdownDelay
// (endpoint removal propagates), then stop accepting and let in-flight requests finish within
// ShutdownTimeout. Calling it twice is harmless.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.draining.CompareAndSwap(false, true) {
		return nil
	}
	if s.cfg.ShutdownDelay > 0 {
		select {
		case <-time.After(s.cfg.ShutdownDelay):
		case <-ctx.Done():
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
	defer cancel()
	return s.http.Shutdown(ctx)
}
