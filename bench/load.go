package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// loadResult is what one load run measured.
type loadResult struct {
	requests int
	errors   int
	elapsed  time.Duration
	lat      []time.Duration // sorted
	cpu      time.Duration   // machine CPU time (all cores) spent during the run
	own      time.Duration   // of which this process's: the load generator and in-process servers
	status   map[int]int
}

func (r loadResult) rate() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// add is r and o measured as one: their counts, times and CPU summed,
// their latencies merged (sorted).
func (r loadResult) add(o loadResult) loadResult {
	out := loadResult{
		requests: r.requests + o.requests,
		errors:   r.errors + o.errors,
		elapsed:  r.elapsed + o.elapsed,
		cpu:      r.cpu + o.cpu,
		own:      r.own + o.own,
		lat:      append(slices.Clone(r.lat), o.lat...),
		status:   map[int]int{},
	}
	slices.Sort(out.lat)
	for _, m := range []map[int]int{r.status, o.status} {
		for k, v := range m {
			out.status[k] += v
		}
	}
	return out
}

func (r loadResult) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(float64(len(r.lat)-1) * p)
	return r.lat[i]
}

func (r loadResult) cpuPerRequest() time.Duration { return r.perRequest(r.cpu) }

func (r loadResult) perRequest(d time.Duration) time.Duration {
	if r.requests == 0 {
		return 0
	}
	return d / time.Duration(r.requests)
}

// load drives url with conns keep-alive connections for d, each sending one
// request after another, and records every latency. The client runs in this
// process, as it does for every row, so its cost is the same in each.
// header is sent with every request (credentials for the authenticated rows).
func load(url string, conns int, d time.Duration, header http.Header) (loadResult, error) {
	tr := &http.Transport{
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	get := func() (*http.Response, error) {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			return nil, err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		return client.Do(req)
	}

	// Warm up: open every connection once so that dialling is not measured.
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := get(); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()

	type part struct {
		lat    []time.Duration
		errs   int
		status map[int]int
		err    error
	}
	parts := make([]part, conns)
	cpu0, own0 := machineCPU(), ownCPU()
	start := time.Now()
	deadline := start.Add(d)
	for i := range conns {
		wg.Add(1)
		go func(p *part) {
			defer wg.Done()
			p.status = map[int]int{}
			p.lat = make([]time.Duration, 0, 4096)
			buf := make([]byte, 32<<10)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				resp, err := get()
				if err != nil {
					p.errs++
					if p.errs > 100 {
						p.err = err
						return
					}
					continue
				}
				io.CopyBuffer(io.Discard, resp.Body, buf)
				resp.Body.Close()
				p.status[resp.StatusCode]++
				if resp.StatusCode != http.StatusOK {
					p.errs++
					continue
				}
				p.lat = append(p.lat, time.Since(t0))
			}
		}(&parts[i])
	}
	wg.Wait()
	res := loadResult{elapsed: time.Since(start), cpu: machineCPU() - cpu0, own: ownCPU() - own0, status: map[int]int{}}
	for _, p := range parts {
		if p.err != nil {
			return res, fmt.Errorf("load on %s: %w", url, p.err)
		}
		res.lat = append(res.lat, p.lat...)
		res.errors += p.errs
		for k, v := range p.status {
			res.status[k] += v
		}
	}
	res.requests = len(res.lat)
	slices.Sort(res.lat)
	return res, nil
}
