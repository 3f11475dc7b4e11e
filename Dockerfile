# Fanout in a container: a static binary on an empty base image, run as a
# non-root user, healthy while /readyz on the public port answers 200.
#   docker build -t fanout .
#   docker run -p 8080:8080 fanout
# (no container engine runs on the machine this was written on: the build
# command below was run there by hand, see README "Deploy".)

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO_ENABLED=0: a static binary that needs no libc in the final image.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/fanout ./cmd/fanout

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/fanout /fanout
# Any flag can be set as FANOUT_<NAME>. The public port serves /readyz for
# health checks (Docker's and a load balancer's); the admin listener
# (/metrics, pprof) is on loopback: set FANOUT_ADMIN_ADDR=:9090 to scrape
# metrics from outside, and keep that port off the public network.
# FANOUT_MAX_CONNS_PER_IP caps one client address: behind a proxy, name it
# in FANOUT_TRUSTED_PROXIES, or all clients count as the proxy.
ENV FANOUT_ADDR=:8080 FANOUT_ADMIN_ADDR=127.0.0.1:9090 FANOUT_LOG_FORMAT=json FANOUT_MAX_CONNS_PER_IP=100
EXPOSE 8080
USER 65532:65532
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=2 \
    CMD ["/fanout", "probe", "http://127.0.0.1:8080/readyz"]
# SIGTERM drains (close 1001 to every client, up to -shutdown-timeout):
# give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/fanout"]
