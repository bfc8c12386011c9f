# The guard as a minimal image: one statically linked binary, no shell, no libc, non-root.
# Built by scripts/build-image.sh, which compiles the binary for x86_64-unknown-linux-musl and
# uses a context holding only that binary.
FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="mtls-guard" \
      org.opencontainers.image.description="Kubernetes validating admission webhook that refuses an Istio STRICT mTLS lock-down while plaintext clients still depend on the target" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY mtls-guard /mtls-guard
USER 65532:65532
ENTRYPOINT ["/mtls-guard"]
